"""Extraction context shared by every template: errors, SOP classes, header tags, plausibility limits, the
header reader, date/time parsing, the per-document context (warnings, flags, numbers with units) and helpers.
No Django (``dosereg.rdsr`` is pure)."""
from __future__ import annotations

import math
import re
from datetime import date, datetime, time, timedelta, timezone

from . import codes as C
from . import nm as NM
from . import units as U
from .reader import Code, Node, TextDecoder
from .records import (
    PREGNANCY_DEFINITE,
    PREGNANCY_NOT,
    PREGNANCY_POSSIBLE,
    PREGNANCY_UNKNOWN,
    DoseDocument,
    Participant,
)



class ExtractionError(ValueError):
    """The input cannot be turned into a DoseDocument. ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class NotADoseObject(ExtractionError):
    """A well-formed object of a class the listener accepts (Enhanced / Comprehensive SR) that carries no dose
    content: stored with status "not a dose object", not quarantined."""


# ---------------------------------------------------------------------------
# SOP classes
# ---------------------------------------------------------------------------
_SR = "1.2.840.10008.5.1.4.1.1.88."
XRAY_DOSE_SR = _SR + "67"
ENHANCED_XRAY_DOSE_SR = _SR + "76"
ENHANCED_SR = _SR + "22"
COMPREHENSIVE_SR = _SR + "33"
DOSE_SR_CLASSES = {XRAY_DOSE_SR, ENHANCED_XRAY_DOSE_SR}
GENERIC_SR_CLASSES = {
    _SR + "11": "Basic Text SR",
    ENHANCED_SR: "Enhanced SR",
    COMPREHENSIVE_SR: "Comprehensive SR",
    _SR + "34": "Comprehensive 3D SR",
    _SR + "35": "Extensible SR",
}
NM_SR_CLASSES = {NM.RRDSR_CLASS: "rrdsr", NM.PATIENT_DOSE_SR_CLASS: "prdsr"}  # see dosereg.rdsr.nm
_IMG = "1.2.840.10008.5.1.4.1.1."
IMAGE_CLASSES = {
    _IMG + "1": "CR",
    _IMG + "1.1": "DX", _IMG + "1.1.1": "DX",
    _IMG + "1.2": "MG", _IMG + "1.2.1": "MG",
    _IMG + "1.3": "DX", _IMG + "1.3.1": "DX",
    _IMG + "2": "CT", _IMG + "2.1": "CT", _IMG + "2.2": "CT",
    _IMG + "12.1": "XA", _IMG + "12.1.1": "XA",
    _IMG + "12.2": "RF", _IMG + "12.2.1": "RF",
    _IMG + "12.3": "XA",
    _IMG + "13.1.1": "XA", _IMG + "13.1.2": "DX",
    _IMG + "13.1.3": "MG", _IMG + "13.1.4": "MG", _IMG + "13.1.5": "MG",
}
MR_CLASSES = {_IMG + "4", _IMG + "4.1", _IMG + "4.4"}
SOP_CLASSES = {
    "dose_sr": DOSE_SR_CLASSES | set(NM_SR_CLASSES),
    "generic_sr": set(GENERIC_SR_CLASSES),
    "image": set(IMAGE_CLASSES),
    "mr": MR_CLASSES,
    "nm_image": set(NM.NM_IMAGE_CLASSES),
}

# ---------------------------------------------------------------------------
# Header tags
# ---------------------------------------------------------------------------
T_CHARSET = 0x00080005
T_SOP_CLASS = 0x00080016
T_SOP_INSTANCE = 0x00080018
T_STUDY_DATE, T_STUDY_TIME = 0x00080020, 0x00080030
T_SERIES_DATE, T_SERIES_TIME = 0x00080021, 0x00080031
T_ACQ_DATE, T_ACQ_TIME, T_ACQ_DATETIME = 0x00080022, 0x00080032, 0x0008002A
T_CONTENT_DATE, T_CONTENT_TIME = 0x00080023, 0x00080033
T_TZ_OFFSET = 0x00080201
T_ACCESSION = 0x00080050
T_MODALITY = 0x00080060
T_MANUFACTURER = 0x00080070
T_INSTITUTION = 0x00080080
T_STATION = 0x00081010
T_STUDY_DESC = 0x00081030
T_SERIES_DESC = 0x0008103E
T_DEPARTMENT = 0x00081040
T_PERFORMING_PHYSICIAN = 0x00081050
T_OPERATORS = 0x00081070
T_MODEL = 0x00081090
T_ANATOMIC_REGION_SEQ = 0x00082218
T_IRRADIATION_EVENT_UID = 0x00083010
T_PATIENT_NAME = 0x00100010
T_PATIENT_ID = 0x00100020
T_ISSUER = 0x00100021
T_BIRTH_DATE = 0x00100030
T_SEX = 0x00100040
T_AGE = 0x00101010
T_SIZE = 0x00101020
T_WEIGHT = 0x00101030
T_PREGNANCY = 0x001021C0
T_BODY_PART = 0x00180015
T_KVP = 0x00180060
T_FIELD_STRENGTH = 0x00180087
T_SERIAL = 0x00181000
T_SOFTWARE = 0x00181020
T_PROTOCOL = 0x00181030
T_DIST_SRC_DET = 0x00181110
T_EXPOSURE_TIME = 0x00181150
T_TUBE_CURRENT = 0x00181151
T_EXPOSURE_MAS = 0x00181152
T_EXPOSURE_UAS = 0x00181153
T_RADIATION_SETTING = 0x00181155
T_RADIATION_MODE = 0x0018115A
T_DAP = 0x0018115E
T_FILTER_TYPE = 0x00181160
T_SAR = 0x00181316
T_DBDT = 0x00181318
T_B1RMS = 0x00181320
T_EI, T_TARGET_EI, T_DI = 0x00181411, 0x00181412, 0x00181413
T_PRIMARY_ANGLE, T_SECONDARY_ANGLE = 0x00181510, 0x00181511
T_FILTER_MATERIAL = 0x00187050
T_EXPOSURE_TIME_US = 0x00188150
T_TUBE_CURRENT_UA = 0x00188151
T_MR_TIMING_SEQ = 0x00189112
T_OPERATING_MODE_SEQ = 0x00189176
T_OPERATING_MODE_TYPE = 0x00189177
T_OPERATING_MODE = 0x00189178
T_SAR_DEFINITION = 0x00189179
T_GRADIENT_OUTPUT_TYPE = 0x00189180
T_SAR_VALUE = 0x00189181
T_GRADIENT_OUTPUT = 0x00189182
T_SAR_SEQ = 0x00189239
T_CT_EXPOSURE_SEQ = 0x00189321
T_CTDIVOL = 0x00189345
T_CTDI_PHANTOM_SEQ = 0x00189346
T_ACQ_IMAGE_AREA_DAP = 0x00189473
T_STUDY_UID = 0x0020000D
T_SERIES_UID = 0x0020000E
T_NUMBER_OF_FRAMES = 0x00280008
T_TOTAL_FLUORO_TIME = 0x00400300
T_TOTAL_EXPOSURES = 0x00400301
T_ENTRANCE_DOSE_DGY = 0x00400302
T_ENTRANCE_DOSE_MGY = 0x00408302
T_SHARED_FG = 0x52009229
T_PERFRAME_FG = 0x52009230
T_MEDIA_SOP_CLASS = 0x00020002
T_MEDIA_SOP_INSTANCE = 0x00020003

# binary VRs of header tags we decode (everything else is decoded as text)
_BINARY = {
    T_PREGNANCY: ("H", 2),
    T_CTDIVOL: ("d", 8),
    T_B1RMS: ("f", 4),
    T_SAR_VALUE: ("d", 8),
    T_GRADIENT_OUTPUT: ("d", 8),
    T_ENTRANCE_DOSE_DGY: ("H", 2),
    T_ACQ_IMAGE_AREA_DAP: ("f", 4),
    T_TOTAL_FLUORO_TIME: ("H", 2),
    T_TOTAL_EXPOSURES: ("H", 2),
}

_PREGNANCY = {1: PREGNANCY_NOT, 2: PREGNANCY_POSSIBLE, 3: PREGNANCY_DEFINITE, 4: PREGNANCY_UNKNOWN}

# ---------------------------------------------------------------------------
# Plausibility (bad-input suite, issue 7)
# ---------------------------------------------------------------------------
# A dose index outside [0, limit] is not a measurement but a broken encoder or a unit
# error: stored, it would corrupt cumulative totals and raise (or hide) alerts. The
# object is quarantined with the reason (the original is kept for reprocessing).
# Limits are ~50-100x the highest values seen in clinical practice.
DOSE_LIMITS: dict[str, tuple[float, str]] = {
    "dap_gy_cm2": (1e5, "Gy.cm2"),   # longest neuro-interventions: ~2,000 Gy.cm2
    "dose_gy": (1e3, "Gy"),          # Ka,r of the worst documented procedures: ~20 Gy
    "dose_mgy": (1e6, "mGy"),        # CTDIvol of perfusion CT: ~1,000 mGy
    "dlp_mgy_cm": (1e6, "mGy.cm"),   # ~20,000 mGy.cm for the longest CT examinations
}
# technique factors that cannot be negative: a negative value is dropped with a warning
NON_NEGATIVE = frozenset({"time_s", "time_ms", "kv", "ma", "charge_uas", "rate_per_s", "area_m2"})
FUTURE_SLACK = timedelta(days=1)   # modality clocks and time zones
EARLIEST_PLAUSIBLE = datetime(1895, 1, 1)  # the year X-rays were discovered


def check_dose(value: float | None, quantity: str, what: str, sent: str | None = None) -> float | None:
    """Raise ExtractionError for a negative or absurd dose index (``quantity``'s target unit)."""
    if value is None:
        return None
    spec = DOSE_LIMITS.get(quantity)
    if spec is None:
        return value
    limit, unit = spec
    shown = sent or f"{value:g} {unit}"
    if value < 0:
        raise ExtractionError(f"implausible dose value: {what} {shown} is negative")
    if value > limit:
        raise ExtractionError(
            f"implausible dose value: {what} {shown} (= {value:g} {unit}) exceeds the plausibility "
            f"limit of {limit:g} {unit}"
        )
    return value


class Header:
    """Typed access to a raw (neutral) data set."""

    __slots__ = ("raw", "dec", "little")

    def __init__(self, raw: dict, dec: TextDecoder, little: bool):
        self.raw = raw
        self.dec = dec
        self.little = little

    def _bytes(self, tag: int) -> bytes | None:
        v = self.raw.get(tag)
        if isinstance(v, (bytes, bytearray)):
            return bytes(v)
        return None

    def text(self, tag: int, pn: bool = False) -> str | None:
        b = self._bytes(tag)
        if not b:
            return None
        s = self.dec.text(b, pn=pn).strip()
        return s or None

    def ascii(self, tag: int) -> str | None:
        b = self._bytes(tag)
        if not b:
            return None
        s = self.dec.ascii(b)
        return s or None

    def number(self, tag: int) -> float | None:
        b = self._bytes(tag)
        if not b:
            return None
        spec = _BINARY.get(tag)
        if spec is not None:
            import struct

            fmt, size = spec
            if len(b) < size:
                return None
            try:
                v = struct.unpack_from(("<" if self.little else ">") + fmt, b)[0]
            except struct.error:
                return None
            v = float(v)
            return v if v == v and v not in (float("inf"), float("-inf")) else None
        return U.parse_number(self.dec.ascii(b))

    def seq(self, tag: int) -> list[Header]:
        v = self.raw.get(tag)
        if isinstance(v, list):
            return [Header(i, self.dec, self.little) for i in v if isinstance(i, dict)]
        return []

    def code(self, tag: int) -> tuple[str, str, str] | None:
        items = self.seq(tag)
        if not items:
            return None
        it = items[0]
        v = it.ascii(0x00080100)
        s = it.ascii(0x00080102)
        m = it.text(0x00080104)
        if not v and not m:
            return None
        return (v or "", s or "", m or "")


# ---------------------------------------------------------------------------
# Date / time parsing
# ---------------------------------------------------------------------------
_DT_RE = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?\s*([+-]\d{4})?$")


def parse_date(s: str | None) -> date | None:
    if not s:
        return None
    s = s.strip().replace(".", "").replace("-", "")
    if len(s) != 8 or not s.isdigit():
        return None
    try:
        return date(int(s[:4]), int(s[4:6]), int(s[6:8]))
    except ValueError:
        return None


def parse_time(s: str | None) -> time | None:
    if not s:
        return None
    s = s.strip().replace(":", "")
    frac = 0
    if "." in s:
        s, f = s.split(".", 1)
        f = (f + "000000")[:6]
        if not f.isdigit():
            return None
        frac = int(f)
    if not s.isdigit() or len(s) not in (2, 4, 6):
        return None
    try:
        return time(int(s[:2]), int(s[2:4] or 0), int(s[4:6] or 0), frac)
    except ValueError:
        return None


def parse_tz(s: str | None) -> timezone | None:
    if not s:
        return None
    s = s.strip()
    if len(s) != 5 or s[0] not in "+-" or not s[1:].isdigit():
        return None
    h, m = int(s[1:3]), int(s[3:5])
    if h > 14 or m > 59:
        return None
    delta = timedelta(hours=h, minutes=m)
    return timezone(-delta if s[0] == "-" else delta)


def parse_dt(s: str | None) -> tuple[datetime | None, timezone | None]:
    """DICOM DT -> (naive datetime, offset or None)."""
    if not s:
        return None, None
    m = _DT_RE.match(s.strip())
    if not m:
        return None, None
    y, mo, d, hh, mi, ss, frac, tz = m.groups()
    try:
        dt = datetime(
            int(y), int(mo or 1), int(d or 1), int(hh or 0), int(mi or 0), int(ss or 0),
            int(((frac or "") + "000000")[:6]),
        )
    except ValueError:
        return None, None
    return dt, parse_tz(tz)


def parse_age(s: str | None) -> float | None:
    if not s:
        return None
    s = s.strip().upper()
    m = re.match(r"^(\d{1,3})\s*([DWMY])?$", s)
    if not m:
        return None
    n = int(m.group(1))
    unit = m.group(2) or "Y"
    return {"Y": float(n), "M": n / 12.0, "W": n * 7 / 365.25, "D": n / 365.25}[unit]


# ---------------------------------------------------------------------------
# Extraction context
# ---------------------------------------------------------------------------
class _Ctx:
    def __init__(self, doc: DoseDocument, tz: timezone | None):
        self.doc = doc
        self.tz = tz  # header TimezoneOffsetFromUTC
        self._seen: set[str] = set()
        self.plane_sent: dict[str, set[str]] = {}
        self.obs: dict[tuple, str | None] = {}  # TID 1002 device observer items
        self.dropped_offset = False
        self.siemens_position: str | None = None  # Siemens private comment: <PatientPosition><Position SRData="HFS">

    def warn(self, msg: str) -> None:
        if msg not in self._seen:
            self._seen.add(msg)
            self.doc.warnings.append(msg)

    def flag(self, msg: str) -> None:
        """A warning that makes the stored result doubtful: also listed in ``doc.flags``."""
        if msg not in self.doc.flags:
            self.doc.flags.append(msg)
        self.warn(msg)

    def dt(self, s: str | None, what: str = "datetime") -> datetime | None:
        """Naive unless (0008,0201) is present; then aware."""
        if not s:
            return None
        dt, off = parse_dt(s)
        if dt is None:
            self.flag(f"{what}: unparseable DT {s.strip()[:40]!r}; stored as null")
            return None
        if self.tz is not None:
            return dt.replace(tzinfo=off or self.tz)
        if off is not None:
            self.warn("DT values carry a UTC offset but Timezone Offset From UTC (0008,0201) is absent; "
                      "offsets ignored, datetimes kept naive as sent")
        return dt

    def da_tm(self, d: str | None, t: str | None, what: str = "Date") -> datetime | None:
        dd = parse_date(d)
        if dd is None:
            if d and d.strip():
                self.flag(f"invalid {what} {d.strip()[:40]!r} (not a valid YYYYMMDD date); stored as null")
            return None
        tt = parse_time(t)
        if tt is None:
            if t and t.strip():
                self.warn(f"invalid time {t.strip()[:40]!r} for {what} {(d or '').strip()}; midnight assumed")
            tt = time(0, 0)
        dt = datetime.combine(dd, tt)
        if self.tz is not None:
            dt = dt.replace(tzinfo=self.tz)
        return dt

    def num(self, node: Node, quantity: str) -> float | None:
        if node.value is None:
            return None
        unit = node.unit.value if node.unit is not None else None
        what = (node.concept.meaning if node.concept is not None else "value") or "value"
        v = U.convert(node.value, unit, quantity, self.warn, what=what)
        if quantity in DOSE_LIMITS:
            if v is not None and not math.isfinite(v):
                v = None
            if v is None and str(node.value).strip() and U.factor(unit, quantity) is not None:
                # NaN, inf or text where a dose was sent: not "no dose" -- the report's dose is unknown
                self.flag(f"unreadable dose value: {what} {str(node.value).strip()[:40]!r} {unit or ''}".rstrip()
                          + "; stored as null, the study's dose is incomplete")
                return None
        if v is None:
            return None
        if quantity in DOSE_LIMITS:
            return check_dose(v, quantity, what, f"{str(node.value).strip()} {unit or ''}".strip())
        if v < 0 and quantity in NON_NEGATIVE:
            self.warn(f"{what}: negative value {str(node.value).strip()} {unit or ''} is not plausible; stored as null")
            return None
        return v


def _text_value(node: Node) -> str | None:
    v = node.value
    if v is None:
        return None
    if isinstance(v, Code):
        return v.meaning or v.value or None
    s = str(v).strip()
    return s or None


def _yes_no(node: Node) -> bool | None:
    v = node.value
    if isinstance(v, Code):
        if v.key == C.YES:
            return True
        if v.key == C.NO:
            return False
    return None


def _code_str(code: Code) -> str:
    v, s = code.key
    return f"{s}:{v}"


def _role_from_code(code: Code | None) -> tuple[str | None, str | None]:
    if code is None:
        return None, None
    role = C.ROLE_CODES.get(code.key)
    if role is None:
        role = re.sub(r"[^a-z0-9]+", "_", (code.meaning or code.value).lower()).strip("_") or None
    return role, f"{code.scheme}:{code.value}"


def _add_participant(doc: DoseDocument, p: Participant) -> None:
    key = (p.name, p.role, p.person_id)
    for q in doc.participants:
        if (q.name, q.role, q.person_id) == key:
            return
    doc.participants.append(p)


def _person(ctx: _Ctx, node: Node, source: str = "rdsr") -> None:
    """TID 1020 Person Participant rooted at a PNAME 113870 item."""
    name = _text_value(node)
    role = role_code = person_id = org = None
    for ch in node.children:
        k = ch.key
        if k == C.PERSON_ROLE_IN_PROCEDURE:
            role, role_code = _role_from_code(ch.value if isinstance(ch.value, Code) else None)
        elif k == C.PERSON_ID:
            person_id = _text_value(ch)
        elif k == C.PERSON_ORGANIZATION:
            org = _text_value(ch)
    if not name and not person_id:
        ctx.warn("Person Participant with empty Person Name and no Person ID ignored")
        return
    _add_participant(ctx.doc, Participant(name=name, role=role, role_code=role_code, person_id=person_id,
                                          organization=org, source=source))


def _device_fallbacks(ctx: _Ctx) -> None:
    d = ctx.doc.device
    obs = ctx.obs
    if not d.manufacturer:
        m = obs.get(C.DEVICE_OBSERVER_MANUFACTURER)
        if m:
            d.manufacturer = m
            ctx.warn("header Manufacturer (0008,0070) blank; taken from Device Observer Manufacturer (121014)")
        else:
            ctx.warn("Manufacturer unknown: header Manufacturer (0008,0070) blank and no Device Observer "
                     "Manufacturer (121014); left null")
    if not d.model:
        m = obs.get(C.DEVICE_OBSERVER_MODEL)
        if m:
            d.model = m
            ctx.warn("header Manufacturer's Model Name (0008,1090) blank; taken from Device Observer Model Name "
                     "(121015)")
    if not d.serial_number:
        s = obs.get(C.DEVICE_OBSERVER_SERIAL)
        if s:
            d.serial_number = s


