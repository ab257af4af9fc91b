"""Plain-language explanations of dose quantities, and display-only effective dose estimates.

Effective dose is shown to patients only where a verified conversion exists
(dose-standards.md §7.1: adult CT, E = k x DLP with the ICRP 103 k-factors of
Deak et al. 2010) and always as a population-average estimate. Nothing here is
stored; it is recomputed for display.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Quantity:
    key: str
    label: str
    short: str
    unit: str
    means: str
    not_means: str


QUANTITIES: dict[str, Quantity] = {q.key: q for q in [
    Quantity(
        "dap_total_gy_cm2", "Kerma-area product (KAP, also called DAP)", "KAP", "Gy·cm²",
        "The total amount of X-ray radiation that left the machine during the examination, multiplied by the "
        "area of the beam. Staff use it to compare examinations and to check equipment and technique.",
        "It is not the dose to any organ or to your skin. The same value means different things for different "
        "parts of the body and different body sizes.",
    ),
    Quantity(
        "dose_rp_max_plane_gy", "Reference air kerma (Ka,r)", "Ka,r", "mGy",
        "The radiation measured in air at a fixed reference point near where the beam enters the body, added up "
        "over the procedure. Staff use it to watch for possible skin effects during long procedures.",
        "It is not your actual skin dose: the beam moves around, and the table and your position differ from the "
        "reference point. Your real skin dose is usually lower, occasionally higher.",
    ),
    Quantity(
        "fluoro_time_total_s", "Fluoroscopy time", "Fluoro time", "min:s",
        "How long the live X-ray image (fluoroscopy) was switched on in total.",
        "It is not a dose. Two procedures with the same time can give very different doses.",
    ),
    Quantity(
        "ctdivol_max_mgy", "Volume CT dose index (CTDIvol)", "CTDIvol", "mGy",
        "How intense the CT scan was, measured by the scanner in a standard plastic test object (phantom). "
        "The highest value of the examination is shown.",
        "It is not the dose you received: it describes the scanner's output in a test object of fixed size. "
        "Smaller people receive more than the index suggests, larger people less.",
    ),
    Quantity(
        "dlp_total_mgy_cm", "Dose-length product (DLP)", "DLP", "mGy·cm",
        "The CT dose index multiplied by the length of the body that was scanned: the total radiation output "
        "of the CT examination.",
        "It is not an organ dose or your personal dose; it is the scanner's output measured in a test object.",
    ),
    Quantity(
        "sar_w_kg", "Specific absorption rate (SAR)", "SAR", "W/kg",
        "MRI uses a strong magnet and radio waves, not X-rays. SAR describes how much radio-wave energy the body "
        "absorbs, which can warm it slightly; scanners keep it within safety limits.",
        "It is not ionising radiation and does not add to your X-ray dose.",
    ),
    Quantity(
        "effective_dose_msv", "Effective dose (estimate)", "Effective dose", "mSv",
        "A population-average estimate used to compare different kinds of examination, calculated from the dose "
        "index with published conversion factors for the part of the body examined (for example ICRP Publication "
        "103 factors for CT, Deak et al. 2010).",
        "It is not your personal risk and not the dose to any organ: effective dose describes an average person, "
        "not you (ICRP Publication 103).",
    ),
]}

DEVICE_TYPES = {
    "CT": "CT scanner",
    "RF": "Fluoroscopy / interventional X-ray",
    "XA": "Angiography / interventional X-ray",
    "DX": "X-ray radiography",
    "CR": "X-ray radiography",
    "MG": "Mammography",
    "MR": "MRI scanner (no ionising radiation)",
    "NM": "Nuclear medicine",
    "PT": "PET",
}


def device_type(modality: str) -> str:
    return DEVICE_TYPES.get((modality or "").upper(), modality or "X-ray equipment")


# adult CT k-factors, mSv per mGy·cm, ICRP 103 column of dose-standards.md §7.1 (Deak et al. 2010)
K_FACTORS_ICRP103 = {
    "head": 0.0019,
    "neck": 0.0051,
    "chest": 0.0145,
    "abdomen": 0.0153,
    "pelvis": 0.0129,
    "trunk": 0.0152,
}
K_FACTOR_SOURCE = "ICRP 103 adult k-factors (Deak et al., Radiology 2010), E = k × DLP"

_REGION_CODES = {
    "69536005": "head", "12738006": "head", "89546000": "head",
    "45048000": "neck",
    "51185008": "chest", "43799004": "chest",
    "818981001": "abdomen", "113345001": "abdomen",
    "816092008": "pelvis", "12921003": "pelvis",
    "416775004": "trunk",
}
_REGION_WORDS = [
    ("trunk", ("chest, abdomen and pelvis", "chest abdomen pelvis", "chest/abdomen/pelvis", "trunk", "thorax, abdomen and pelvis")),
    ("head", ("head", "brain", "skull")),
    ("neck", ("neck",)),
    ("chest", ("chest", "thorax", "lung")),
    ("abdomen", ("abdomen",)),
    ("pelvis", ("pelvis",)),
]


def ct_region(target_region: str, target_region_code: str) -> str | None:
    """One of the k-factor regions, or None when the region is unknown or spans regions ambiguously."""
    code = (target_region_code or "").split(":")[-1]
    if code in _REGION_CODES:
        return _REGION_CODES[code]
    text = (target_region or "").strip().lower()
    if not text:
        return None
    for region, words in _REGION_WORDS[:1]:
        if any(w in text for w in words):
            return region
    hits = {region for region, words in _REGION_WORDS[1:] if any(w in text for w in words)}
    return hits.pop() if len(hits) == 1 else None


def ct_effective_dose_msv(events: list[dict], *, age_years: float | None) -> float | None:
    """E = sum(k(region) x DLP) over the CT events, or None when any event cannot be converted.

    Adults only (the k-factors are adult factors); head factors assume the 16 cm head phantom.
    """
    if age_years is None or age_years < 18 or not events:
        return None
    total = 0.0
    for ev in events:
        dlp = ev.get("dlp_mgy_cm")
        region = ct_region(ev.get("target_region", ""), ev.get("target_region_code", ""))
        if dlp is None or region is None:
            return None
        if region == "head" and ev.get("ctdiw_phantom") == "body_32cm":
            return None
        total += K_FACTORS_ICRP103[region] * dlp
    return total


def background_days(effective_dose_msv: float) -> float:
    per_day = settings.DOSEREG_BACKGROUND_MSV_PER_YEAR / 365.0
    return effective_dose_msv / per_day


def background_phrase(effective_dose_msv: float) -> str:
    days = background_days(effective_dose_msv)
    if days < 1:
        return "less than one day of natural background radiation"
    if days < 60:
        n = round(days)
        return f"about {n} day{'s' if n != 1 else ''} of natural background radiation"
    if days < 730:
        return f"about {round(days / 30.4)} months of natural background radiation"
    return f"about {days / 365:.1f} years of natural background radiation"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def patient_value(key: str, value: float | None) -> str:
    """A value in the unit shown to patients (Ka,r in mGy; fluoroscopy time as min:s)."""
    if value is None:
        return ""
    if key == "fluoro_time_total_s":
        return fmt_seconds(value)
    if key == "dose_rp_max_plane_gy":
        value = value * 1000
    if key == "effective_dose_msv":
        return f"{value:.2g}" if value < 1 else f"{value:.1f}"
    return _sig3(value)


def _sig3(value: float) -> str:
    """Three significant figures, never in scientific notation (1,234 not 1.23e+03)."""
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"
