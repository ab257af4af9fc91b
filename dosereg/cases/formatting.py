"""Text of cases: values and levels through ``dosereg.formatting`` (the one home for units and rounding: a case's
Ka,r reads in Gy and its fluoroscopy time as min:s, as on every other page and in every e-mail, whatever unit a
rule's level was entered in), level names, and citations without internal file references.
"""
from __future__ import annotations

import re

from dosereg import formatting as fmt
from dosereg.exposure.constants import CANONICAL_UNIT

QUANTITY_LABEL = {"kar_gy": "Ka,r (reference air kerma)", "psd_gy": "peak skin dose (estimate)", "kap_gy_cm2": "KAP (kerma-area product)",
                  "fluoro_time_s": "fluoroscopy time", "dlp_mgy_cm": "DLP", "ctdivol_mgy": "CTDIvol",
                  "procedure_count": "procedures", "pregnancy": "pregnancy", "dose_check": "CT Dose Check",
                  "nm_paed_activity_mbq": "administered activity (child; EANM paediatric dosage card)"}

_INTERNAL = re.compile(r"\s*(?:[—–-]\s*)?\(?\s*dose-standards(?:\.md)?\s*(?:§\s*[\d.]+(?:\s*,\s*§?\s*[\d.]+)*)?\s*[✔◐⚠]?\s*\)?")
_MARKS = {"✔": "", "◐": "", "⚠": "(unverified)"}


def public_text(text: str | None) -> str:
    """A citation as a clinician reads it: no "dose-standards.md §4.3", no ✔/◐ marks (⚠ becomes "(unverified)")."""
    t = _INTERNAL.sub("", text or "")
    for mark, word in _MARKS.items():
        t = t.replace(mark, word)
    t = re.sub(r"\(\s*\)", "", t)
    t = re.sub(r"\s+([.,;)])", r"\1", t)
    t = re.sub(r"[ \t]{2,}", " ", t).strip()
    return t.rstrip(" —–-")


def fmt_value(quantity: str, value: float | None) -> str:
    """A case value or level with its unit: ``"7.4 Gy"``, ``"61:10 min:s"``, ``"3 procedures"``; "—" for None.
    ``value`` is in the quantity's stored unit (alerts store values and levels converted to it)."""
    return fmt.quantity_text(quantity, value, other_unit=CANONICAL_UNIT.get(quantity, ""))


def level_name(level: str) -> str:
    if level.startswith("subsequent+"):
        return f"subsequent level +{level.split('+', 1)[1]}"
    return {"srdl": "substantial radiation dose level (SRDL)", "first": "first notification level",
            "notification": "notification value", "alert": "alert value", "pregnancy": "pregnancy",
            "dose_check": "Dose Check", "repeat": "repeat procedures",
            "review": "institutional review level"}.get(level, level)


def level_line(alert) -> str:
    """One level of a case, e.g. "Ka,r (reference air kerma) 5.2 Gy reached 5 Gy — substantial radiation dose level"."""
    title = (alert.detail or {}).get("rule_title") or QUANTITY_LABEL.get(alert.quantity, alert.quantity)
    if alert.value is None:
        return f"{title}: {level_name(alert.level)}"
    win = f" over {alert.window_days} days" if alert.window_days else ""
    return (f"{title}: {fmt_value(alert.quantity, alert.value)}{win}, level "
            f"{fmt_value(alert.quantity, alert.threshold)} — {level_name(alert.level)}")
