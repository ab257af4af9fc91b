"""Plain-language explanations of dose quantities for patients.

The unit of each quantity here is the one patients see (the sitewide one of ``dosereg.formatting``: Ka,r in Gy, fluoroscopy time as min:s); numbers are
formatted by ``dosereg.formatting``. Effective dose is not estimated here: the portal shows the exposure
app's estimate (``dosereg.exposure.effective_dose``, one factor table) where a verified conversion exists,
always as a population-average estimate.
"""
from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from dosereg import formatting as fmt


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
        "dose_rp_max_plane_gy", "Reference air kerma (Ka,r)", "Ka,r", "Gy",
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


# ---------------------------------------------------------------------------
# skin reactions after a fluoroscopically guided procedure (patient portal)
# ---------------------------------------------------------------------------
# Bands of the peak skin dose: NCRP 168 / Balter et al., Radiology 2010 (single-site acute, ◐ dose-standards.md §4.2),
# in plain words. Each band: (upper bound in Gy or None, what may happen).
SKIN_BANDS: list[tuple[float | None, str]] = [
    (2.0, "Skin changes are not expected at this level."),
    (5.0, "Some people get a mild, temporary reddening of the skin, like a light sunburn, within about 2 weeks, and "
          "some hair in that area may fall out for a while (from about 2 to 8 weeks after). These changes usually "
          "go away on their own."),
    (10.0, "Reddening of the skin and hair loss in that area are likely. The reddening can last longer than a "
           "sunburn, and some of the hair may not grow back."),
    (15.0, "The skin in that area may redden, itch and peel, hair loss may be permanent, and months later the skin "
           "may become thinner or darker."),
    (None, "The skin in that area may redden, blister or peel, and it may later break down into a sore that heals "
           "slowly and may need treatment by a skin or wound specialist. Follow-up by your doctor is important."),
]
SKIN_BANDS_SOURCE = "NCRP Report 168 (2010) and Balter et al., Radiology 2010 (skin effects of fluoroscopically guided procedures)"


def skin_band(psd_gy: float) -> str:
    for upper, text in SKIN_BANDS:
        if upper is None or psd_gy < upper:
            return text
    return SKIN_BANDS[-1][1]


def skin_reaction(*, psd_gy: float, where: str = "", institution: str = "", procedure_date=None) -> dict:
    """Plain-language text for a patient after a procedure whose estimated peak skin dose is above the first level:
    what skin reactions look like, when they appear, whom to call. The number always comes with its meaning."""
    side = where.split(",", 1)[0].split("(", 1)[0].strip() if where else ""
    place = f"on your {side}" if side in ("back", "front", "left side", "right side") else "where the X-ray beam entered"
    at = f" at {institution}" if institution else ""
    on = f" on {procedure_date.day} {procedure_date:%B %Y}" if procedure_date else ""
    return {
        "title": "About your skin after this procedure",
        "intro": ("This procedure used X-rays for long enough that the skin where the beam entered the body received "
                  f"a higher dose than in most examinations. We estimate the highest skin dose at about "
                  f"{fmt.number(psd_gy, 2)} Gy (gray, the unit of radiation dose absorbed by the body), {place}. This "
                  "is an estimate from the machine's records, not a measurement: the real dose may be somewhat lower "
                  "or higher."),
        "band": skin_band(psd_gy),
        "looks_like": ("Reddening of the skin (like sunburn), itching, a rash, or hair falling out in one patch of skin, "
                       "usually on the side of the body that faced the X-ray tube. Less often, and later: peeling, "
                       "blisters, darker or thinner skin, or a sore that does not heal."),
        "when": ("Skin changes do not appear straight away. Reddening can start within days to about 2 weeks; hair "
                 "loss after 2 to 8 weeks; peeling or a sore from several weeks to months later. Look at the area, or "
                 "ask someone to look at it, for the next few months."),
        "who": (f"If you notice any change in your skin, contact {settings.DOSEREG_PORTAL_SKIN_CONTACT}. Tell them "
                f"that you had a procedure using X-rays{at}{on}. Your care team may also ask to see you 2 to 4 weeks "
                "after the procedure to check your skin."),
        "source": SKIN_BANDS_SOURCE,
    }
