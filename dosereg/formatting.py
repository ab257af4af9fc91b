"""The one home for showing dose numbers: units (one per quantity), rounding, min:s.

Pure Python (no Django, no models): the HTML template filters, the patient portal, the PDF, the CSV exports,
the alert e-mails, the API's display fields and the command-line reports all call these functions, so a
value reads the same everywhere.

Rules
* **Display**: 3 significant figures, never scientific notation, and integer digits are never rounded away
  (``1234.6`` -> ``"1,235"``, ``0.0123456`` -> ``"0.0123"``, ``12.0`` -> ``"12"``). ``None`` (not reported) is
  ``"—"``, never ``0``.
* **Units: one unit per quantity, sitewide, fixed** (not chosen by magnitude): every value is shown in the
  unit it is stored in, the unit in its field name (``dap_total_gy_cm2``, ``dose_rp_max_plane_gy``,
  ``dlp_total_mgy_cm``): KAP in Gy·cm², Ka,r and peak skin dose in Gy (the unit of their alert levels, so
  "Ka,r 2.4 Gy" and "PSD 1.9 Gy" read side by side and against "level 3 Gy"), CTDIvol in mGy, DLP in mGy·cm,
  effective dose in mSv, SAR in W/kg, administered activity in MBq. The same Ka,r reads "8 Gy" on the study
  page, the patient's history, the portal, the PDF, the case and its e-mail, never "8,000 mGy" on one of them.
  A unit other than the stored one is reached only through :func:`convert` (imports, thresholds set in
  another unit).
* **Fluoroscopy time** is shown as ``m:ss``.
* **Machine-readable values** (CSV columns, API and FHIR numbers) stay numbers in the stored unit, named in the
  column, rounded to 9 significant figures (:func:`machine`): every digit a device reports is kept, the float
  noise of sums is dropped (``478.61458000000005`` -> ``478.61458``, ``0.1 + 0.2`` -> ``0.3``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

MISSING = "—"
SIG_FIGS = 3
MACHINE_SIG_FIGS = 9  # every digit a device reports, none of the binary float noise of sums
ESTIMATE_SIG_FIGS = 2  # effective dose: a population-average estimate, not known to 3 figures


@dataclass(frozen=True)
class Quantity:
    key: str
    label: str  # short label in text: "KAP", "Ka,r"
    unit: str   # canonical (stored) unit


KAP, KAR, FLUORO_TIME, CTDIVOL, DLP, EFFECTIVE_DOSE, SAR = "kap", "kar", "fluoro_time", "ctdivol", "dlp", "effective_dose", "sar"
PSD, ACTIVITY = "psd", "activity"
QUANTITIES: dict[str, Quantity] = {q.key: q for q in (
    Quantity(KAP, "KAP", "Gy·cm²"),
    Quantity(KAR, "Ka,r", "Gy"),
    Quantity(PSD, "PSD", "Gy"),
    Quantity(ACTIVITY, "Activity", "MBq"),
    Quantity(FLUORO_TIME, "Fluoro time", "s"),
    Quantity(CTDIVOL, "CTDIvol", "mGy"),
    Quantity(DLP, "DLP", "mGy·cm"),
    Quantity(EFFECTIVE_DOSE, "E", "mSv"),
    Quantity(SAR, "SAR", "W/kg"),
)}

# field (or rule quantity) name -> quantity; the unit is in the name
FIELD_QUANTITY = {
    "dap_total_gy_cm2": KAP, "kap_gy_cm2": KAP, "dap_gy_cm2": KAP, "fluoro_dap_total_gy_cm2": KAP,
    "acquisition_dap_total_gy_cm2": KAP,
    "dose_rp_max_plane_gy": KAR, "dose_rp_gy": KAR, "dose_rp_total_gy": KAR, "kar_max_gy": KAR, "kar_gy": KAR,
    "kar_max_plane_gy": KAR,
    "fluoro_time_total_s": FLUORO_TIME, "fluoro_time_s": FLUORO_TIME,
    "ctdivol_max_mgy": CTDIVOL, "ctdivol_mgy": CTDIVOL,
    "dlp_total_mgy_cm": DLP, "dlp_mgy_cm": DLP,
    "effective_dose_msv": EFFECTIVE_DOSE,
    "sar_w_kg": SAR,
    "psd_gy": PSD, "peak_skin_dose_gy": PSD,
    "nm_paed_activity_mbq": ACTIVITY, "activity_mbq": ACTIVITY,
}

# unit -> size in the canonical unit of its dimension (one table: every conversion goes through it)
_UNIT_SIZE: dict[str, tuple[str, float]] = {
    "Gy": ("Gy", 1.0), "mGy": ("Gy", 1e-3), "µGy": ("Gy", 1e-6), "uGy": ("Gy", 1e-6),
    "Gy·cm²": ("Gy·cm²", 1.0), "dGy·cm²": ("Gy·cm²", 1e-1), "cGy·cm²": ("Gy·cm²", 1e-2), "mGy·cm²": ("Gy·cm²", 1e-3),
    "µGy·m²": ("Gy·cm²", 1e-2),
    "mGy·cm": ("mGy·cm", 1.0), "Gy·cm": ("mGy·cm", 1e3),
    "Sv": ("Sv", 1.0), "mSv": ("Sv", 1e-3), "µSv": ("Sv", 1e-6),
    "s": ("s", 1.0), "min": ("s", 60.0),
    "W/kg": ("W/kg", 1.0),
    "MBq": ("MBq", 1.0), "GBq": ("MBq", 1e3), "mCi": ("MBq", 37.0),
}


UNITS = frozenset(_UNIT_SIZE)


def quantity_of(name: str) -> Quantity:
    """The quantity of a field or quantity name (``dose_rp_max_plane_gy`` -> Ka,r)."""
    return QUANTITIES[FIELD_QUANTITY.get(name, name)]


def convert(value: float | None, from_unit: str, to_unit: str) -> float | None:
    """``value`` in ``from_unit`` expressed in ``to_unit`` (the only place units are converted)."""
    if value is None or from_unit == to_unit:
        return value
    dim_a, size_a = _UNIT_SIZE[from_unit]
    dim_b, size_b = _UNIT_SIZE[to_unit]
    if dim_a != dim_b:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}")
    return value * (size_a / size_b)


def number(value: float | None, sig: int = SIG_FIGS, missing: str = MISSING, grouping: bool = True) -> str:
    """``value`` to ``sig`` significant figures, integer digits kept, no exponent; ``missing`` for None."""
    if value is None or value == "":
        return missing
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    sig = max(1, int(sig))
    if abs(v) >= 10 ** (sig - 1):
        text = f"{v:,.0f}" if grouping else f"{v:.0f}"
    else:
        text = f"{v:.{sig}g}"
        if "e" in text:  # very small: written out, not 1.2e-05
            text = format(Decimal(text), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def minsec(seconds: float | None, missing: str = MISSING) -> str:
    """Fluoroscopy time as ``m:ss`` (minutes may exceed 59)."""
    if seconds is None or seconds == "":
        return missing
    s = int(round(float(seconds)))
    return f"{s // 60}:{s % 60:02d}"


def interval(seconds: float | None, missing: str = MISSING) -> str:
    """A time between events for reading (a device's usual gap between objects): the largest unit that keeps
    the number at 1 or more, 2 significant figures: "45 s", "12 min", "3.5 h", "2 days"."""
    if seconds is None or seconds == "":
        return missing
    s = float(seconds)
    if not math.isfinite(s) or s < 0:
        return missing
    for size, unit in ((86400.0, "days"), (3600.0, "h"), (60.0, "min")):
        if s >= size:
            return f"{number(s / size, 2)} {unit}"
    return f"{number(s, 2)} s"


def display_unit(quantity: str) -> str:
    """The one unit a quantity is shown in everywhere: its stored unit ("min:s" for fluoroscopy time)."""
    q = quantity_of(quantity)
    return "min:s" if q.key == FLUORO_TIME else q.unit


def _sig(q: Quantity, sig: int | None) -> int:
    return sig if sig is not None else (ESTIMATE_SIG_FIGS if q.key == EFFECTIVE_DOSE else SIG_FIGS)


def value(quantity: str, v: float | None, unit: str | None = None, *, sig: int | None = None, missing: str = MISSING,
          grouping: bool = True) -> str:
    """The number alone, in ``unit`` (default :func:`display_unit`); fluoroscopy time as m:ss. ``sig``: 3
    significant figures (2 for effective dose) unless given."""
    q = quantity_of(quantity)
    shown = unit or display_unit(q.key)
    if q.key == FLUORO_TIME and shown == "min:s":
        return minsec(v, missing)
    return number(convert(v, q.unit, shown), _sig(q, sig), missing, grouping)


def with_unit(quantity: str, v: float | None, unit: str | None = None, *, sig: int | None = None,
              missing: str = MISSING) -> str:
    """``"1.23 Gy"``, ``"3:05 min:s"``; ``missing`` alone for None."""
    if v is None:
        return missing
    q = quantity_of(quantity)
    shown = unit or display_unit(q.key)
    if q.key == FLUORO_TIME and shown == "min:s":
        return f"{minsec(v)} min:s"
    return f"{value(q.key, v, shown, sig=sig)} {shown}"


def quantity_text(name: str, v: float | None, *, other_unit: str = "", missing: str = MISSING) -> str:
    """A rule's value or level with its unit: a dose quantity of this module through :func:`with_unit` (its one
    unit), any other (a count of procedures) as the number and ``other_unit``; ``missing`` for None."""
    if name in FIELD_QUANTITY:
        return with_unit(name, v, missing=missing)
    return missing if v is None else f"{number(v)} {other_unit}".strip()


def dose(quantity: str, v: float | None, unit: str | None = None, *, sig: int | None = None,
         missing: str = "not reported") -> str:
    """``"Ka,r 1.23 Gy"``, ``"KAP 45.6 Gy·cm²"``, ``"DLP 512 mGy·cm"``, ``"Fluoro time 3:05 min:s"``."""
    q = quantity_of(quantity)
    return f"{q.label} {with_unit(q.key, v, unit, sig=sig, missing=missing)}"


def machine(v: float | None, sig: int = MACHINE_SIG_FIGS) -> float | int | None:
    """A number for a CSV column or an API field: unchanged unit, ``sig`` significant figures (float noise gone)."""
    if v is None or isinstance(v, bool) or isinstance(v, int):
        return v
    v = float(v)
    if v == 0 or not math.isfinite(v):
        return v + 0.0 if v == 0 else v
    return float(f"{v:.{sig}g}") + 0.0


def machine_tree(obj):
    """:func:`machine` applied to every float in nested dicts, lists and tuples (a JSON report)."""
    if isinstance(obj, float):
        return machine(obj)
    if isinstance(obj, dict):
        return {k: machine_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [machine_tree(v) for v in obj]
    return obj


# ---------------------------------------------------------------------------
# text read from DICOM, for people (event types, descriptions, person names)
# ---------------------------------------------------------------------------
EVENT_TYPE_WORDS = {
    "fluoroscopy": "Fluoroscopy", "stationary": "Stationary acquisition", "stepping": "Stepping acquisition",
    "rotational": "Rotational acquisition", "ct_sequenced": "CT sequenced (axial)", "ct_spiral": "CT spiral",
    "ct_constant_angle": "CT constant angle (localizer)", "ct_stationary": "CT stationary", "ct_free": "CT free",
    "acquisition": "Acquisition",
}


def event_type(code: str | None, missing: str = MISSING) -> str:
    """An irradiation event type code (``ct_spiral``) in words (``CT spiral``)."""
    if not code:
        return missing
    return EVENT_TYPE_WORDS.get(code) or code.replace("_", " ").capitalize()


def description(text: str | None) -> str:
    """A DICOM description without component carets (``CT^Chest^^`` -> ``CT Chest``)."""
    if not text:
        return ""
    return " ".join(text.replace("^", " ").split())


def _pn_group(group: str, *, family_first: bool) -> str:
    parts = [p.strip() for p in group.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    if family_first:  # ideographic and phonetic groups: family name first, as written in those scripts
        out = " ".join(x for x in (family, given, middle) if x)
    else:
        out = " ".join(x for x in (prefix, given, middle, family) if x)
    return f"{out}, {suffix}" if suffix and out else (out or suffix)


def person_name(value: str | None) -> str:
    """A DICOM PN (PS3.5 §6.2.1) for reading: the alphabetic component group as ``Prefix Given Middle Family,
    Suffix``, followed by the ideographic group in brackets when there is one (``Yamada^Tarou=山田^太郎=やまだ^たろう``
    -> ``Tarou Yamada (山田 太郎)``); with no alphabetic group, the ideographic (else phonetic) one, family first."""
    if not value:
        return ""
    groups = (value.split("=") + ["", "", ""])[:3]
    alpha, ideo, phon = (g.strip() for g in groups)
    if alpha.replace("^", ""):
        shown = _pn_group(alpha, family_first=False)
        extra = _pn_group(ideo, family_first=True) if ideo.replace("^", "") else ""
        return f"{shown} ({extra})" if extra else shown
    for g in (ideo, phon):
        if g.replace("^", ""):
            return _pn_group(g, family_first=True)
    return ""
