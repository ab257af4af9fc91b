"""Text of cases: values in the unit the rule's level is set in, and citations without internal file references.

Kept local to the cases app (one function per concept); the project's shared formatting module can absorb
these when it lands.
"""
from __future__ import annotations

import re

CANONICAL_UNIT = {"kar_gy": "Gy", "kap_gy_cm2": "Gy·cm²", "fluoro_time_s": "s", "dlp_mgy_cm": "mGy·cm",
                  "ctdivol_mgy": "mGy", "procedure_count": "procedures", "psd_gy": "Gy", "nm_paed_activity_mbq": "MBq"}
UNIT_FACTORS = {"kar_gy": {"Gy": 1.0, "mGy": 1e-3}, "psd_gy": {"Gy": 1.0, "mGy": 1e-3}, "kap_gy_cm2": {"Gy·cm²": 1.0, "cGy·cm²": 1e-2, "mGy·cm²": 1e-3, "dGy·cm²": 1e-1},
                "fluoro_time_s": {"s": 1.0, "min": 60.0}}
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


def shown_unit(quantity: str, rule_unit: str = "") -> tuple[str, float]:
    """The unit a value is shown in (the rule's, so value and level read alike) and its factor from canonical."""
    unit = rule_unit or CANONICAL_UNIT.get(quantity, "")
    return unit, UNIT_FACTORS.get(quantity, {}).get(unit, 1.0)


def fmt_number(v: float | None) -> str:
    if v is None:
        return "—"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}".replace(",", " ")
    if a >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}" if a >= 0.01 else f"{v:.2g}"


def fmt_value(quantity: str, value: float | None, rule_unit: str = "") -> str:
    if value is None:
        return "—"
    unit, f = shown_unit(quantity, rule_unit)
    if quantity == "fluoro_time_s" and unit == "s" and value >= 60:
        return f"{value / 60:.1f} min"
    return f"{fmt_number(value / f)} {unit}".strip()


def level_name(level: str) -> str:
    if level.startswith("subsequent+"):
        return f"subsequent level +{level.split('+', 1)[1]}"
    return {"srdl": "substantial radiation dose level (SRDL)", "first": "first notification level",
            "notification": "notification value", "alert": "alert value", "pregnancy": "pregnancy",
            "dose_check": "Dose Check", "repeat": "repeat procedures",
            "review": "institutional review level"}.get(level, level)


def level_line(alert) -> str:
    """One level of a case, e.g. "Ka,r (reference air kerma) 5.2 Gy reached 5 Gy — substantial radiation dose level"."""
    rule_unit = alert.rule.threshold_unit if getattr(alert, "rule_id", None) else ""
    title = (alert.detail or {}).get("rule_title") or QUANTITY_LABEL.get(alert.quantity, alert.quantity)
    if alert.value is None:
        return f"{title}: {level_name(alert.level)}"
    win = f" over {alert.window_days} days" if alert.window_days else ""
    return (f"{title}: {fmt_value(alert.quantity, alert.value, rule_unit)}{win}, level "
            f"{fmt_value(alert.quantity, alert.threshold, rule_unit)} — {level_name(alert.level)}")
