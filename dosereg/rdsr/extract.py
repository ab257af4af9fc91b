"""Pure extraction: DICOM bytes -> :class:`~dosereg.rdsr.records.DoseDocument`.

No Django here.  Public API::

    extract_file(path, backend="auto") -> DoseDocument
    extract_bytes(data, backend="auto") -> DoseDocument
    ExtractionError(reason)            # ValueError subclass, .reason is human readable

``backend``: ``"auto"`` (fast byte reader, pydicom fallback for transfer syntaxes it
does not handle), ``"fast"`` or ``"pydicom"`` (mainly for tests; both produce the same
neutral tree, see :mod:`dosereg.rdsr.reader`).

What is read
------------
* X-Ray Radiation Dose SR (TID 10001 projection / TID 10011 CT), routed on
  ContentTemplateSequence, falling back to "Procedure reported" when absent.
* Enhanced X-Ray Radiation Dose SR (TID 10040 family): best effort.
* Enhanced / Comprehensive SR carrying dose content: Siemens Arcadis private
  "Radiation Summary Report" (99SMS_RADSUM) -> ``dose_summary``; CT dose reports
  (GE Optima CT660) -> TID 10011, ``rdsr``.
* CT / XA / RF image objects -> ``image_header``: **one event per image, whose
  ``irradiation_event_uid`` is the image's SOP Instance UID** (the header Irradiation
  Event UID (0008,3010), when present, is kept in ``extra["header_irradiation_event_uid"]``).
* DX / CR / MG image objects -> ``image_header``: **one event per exposure**: its key is
  the header Irradiation Event UID, else derived from the exposure (see
  :func:`dosereg.rdsr.mammo.exposure_event_uid`), so the For Presentation and For
  Processing copies of one exposure are one event; the image's SOP Instance UID is in
  ``extra["image_sop_instance_uid"]``. Mammography header and TID 10010 items: :mod:`.mammo`.
* Radiopharmaceutical Radiation Dose SR (TID 10021) -> ``rrdsr``; Patient Radiation Dose
  SR (TID 10030) -> ``patient_dose_sr`` (recorded only): :mod:`.nm`.
* Enhanced / Comprehensive SR without dose content -> :class:`NotADoseObject`.
* MR image objects -> ``mr_header`` with :class:`MRInfo`, no events.

Units are normalised by unit code (see :mod:`dosereg.rdsr.units`); unknown units give
a warning and ``None``.  Empty measured values are ``None`` (never 0).
"""
from __future__ import annotations

import gc
import math
import re
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from . import codes as C
from . import mammo as M
from . import nm as NM
from . import units as U
from .reader import MAX_DEPTH, Code, Node, Parsed, ReaderError, TextDecoder, build_content_tree, read
from .records import (
    DOSE_SUMMARY,
    IMAGE_HEADER,
    MR_HEADER,
    PREGNANCY_DEFINITE,
    PREGNANCY_NOT,
    PREGNANCY_POSSIBLE,
    PREGNANCY_UNKNOWN,
    RDSR,
    DoseCheck,
    DoseDocument,
    IrradiationEvent,
    MRInfo,
    Participant,
    PlaneTotals,
)

__all__ = ["ExtractionError", "NotADoseObject", "extract_bytes", "extract_file", "SOP_CLASSES"]


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
                self.warn(f"invalid time {t.strip()[:40]!r} for {what} {d.strip()}; midnight assumed")
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


# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------
def extract_file(path: str | Path, backend: str = "auto", max_events: int | None = None) -> DoseDocument:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ExtractionError(f"cannot read file {str(path)!r}: {exc.strerror or exc}") from None
    return extract_bytes(data, backend=backend, max_events=max_events)


# An Irradiation Event UID content item: Code Value (0008,0100) "113769" (DCM), Explicit and Implicit VR LE.
_EVENT_UID_CODE = (b"\x08\x00\x00\x01SH\x06\x00113769", b"\x08\x00\x00\x01\x06\x00\x00\x00113769")


def count_event_uid_items(data: bytes) -> int:
    """How many Irradiation Event UID content items the encoded object holds (one per event), by a scan of
    the bytes (milliseconds), before parsing: parsing an object costs about ten times its size in memory."""
    return max(data.count(code) for code in _EVENT_UID_CODE)


def _too_many_events(n: int, max_events: int) -> ExtractionError:
    return ExtractionError(f"too many irradiation events: {n} in one object, more than the limit of {max_events} "
                           "(INGEST_MAX_EVENTS); not parsed, to bound the worker's memory")


def extract_bytes(data: bytes, backend: str = "auto", max_events: int | None = None) -> DoseDocument:
    """``max_events``: an object with more irradiation events raises ExtractionError (checked on the bytes
    before parsing, and on the result)."""
    if data is None or len(data) == 0:
        raise ExtractionError("empty input: 0 bytes, not a DICOM file")
    if max_events is not None:
        n = count_event_uid_items(data)
        if n > max_events:
            raise _too_many_events(n, max_events)
    # Parsing allocates ~100k small objects; the cyclic GC would repeatedly scan them for
    # nothing (the tree is acyclic).  Pausing it makes large RDSRs ~30% faster.
    gc_was_enabled = gc.isenabled()
    if gc_was_enabled:
        gc.disable()
    try:
        parsed = read(data, backend)
        doc = _extract(parsed)
        if max_events is not None and len(doc.events) > max_events:  # e.g. deflated: not seen by the scan
            raise _too_many_events(len(doc.events), max_events)
        return doc
    except ExtractionError:
        raise
    except ReaderError as exc:
        prefix = {
            "not_dicom": "",
            "truncated": "truncated DICOM data: ",
            "malformed": "malformed DICOM data: ",
            "unsupported": "unsupported DICOM encoding: ",
        }.get(exc.kind, "")
        raise ExtractionError(prefix + exc.reason) from None
    except RecursionError:
        raise ExtractionError(f"malformed DICOM data: nesting too deep (limit {MAX_DEPTH})") from None
    except MemoryError:
        raise ExtractionError("malformed DICOM data: out of memory while parsing") from None
    except Exception as exc:  # noqa: BLE001 - never leak another exception type
        raise ExtractionError(f"could not extract dose data: unexpected {type(exc).__name__}: {exc}") from exc
    finally:
        if gc_was_enabled:
            gc.enable()


_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# instance UIDs are matched loosely (some devices emit letters); no control chars, spaces or backslashes
_LOOSE_UID_RE = re.compile(r"^[\x21-\x5b\x5d-\x7e]{1,128}$")


def _sop_class_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name if name != uid else "unknown SOP class"
    except Exception:  # noqa: BLE001
        return "unknown SOP class"


def _extract(parsed: Parsed) -> DoseDocument:
    if not parsed.ds:
        # e.g. random bytes after a valid File Meta whose first "tag" sorts after Pixel Data
        raise ExtractionError("malformed DICOM data: the data set is empty (no data element readable after "
                              "the File Meta Information)")
    dec = TextDecoder(parsed.ds.get(T_CHARSET) if isinstance(parsed.ds.get(T_CHARSET), bytes) else None)
    h = Header(parsed.ds, dec, parsed.little_endian)
    meta = Header(parsed.meta, dec, True)
    sop_class = h.ascii(T_SOP_CLASS) or meta.ascii(T_MEDIA_SOP_CLASS)
    sop_instance = h.ascii(T_SOP_INSTANCE) or meta.ascii(T_MEDIA_SOP_INSTANCE)
    if not sop_class:
        raise ExtractionError("missing SOP Class UID (0008,0016): cannot tell what this object is")
    if not sop_instance:
        raise ExtractionError("missing SOP Instance UID (0008,0018): the object cannot be identified")
    if not _UID_RE.match(sop_class):
        raise ExtractionError(f"invalid SOP Class UID (0008,0016) {sop_class[:80]!r}: not a DICOM UID")
    if not _LOOSE_UID_RE.match(sop_instance):
        raise ExtractionError(f"invalid SOP Instance UID (0008,0018) {sop_instance[:80]!r}")

    if sop_class in NM_SR_CLASSES:
        kind = NM_SR_CLASSES[sop_class]
    elif sop_class in DOSE_SR_CLASSES or sop_class in GENERIC_SR_CLASSES:
        kind = "sr"
    elif sop_class in IMAGE_CLASSES:
        kind = "image"
    elif sop_class in MR_CLASSES:
        kind = "mr"
    elif sop_class in NM.NM_IMAGE_CLASSES:
        kind = "nm_image"
    else:
        raise ExtractionError(
            f"unsupported SOP class {sop_class} ({_sop_class_name(sop_class)}): "
            "not a radiation dose SR, an X-ray/CT image or an MR image"
        )

    doc = DoseDocument(sop_instance_uid=sop_instance, sop_class_uid=sop_class, source_kind=RDSR)
    tz = parse_tz(h.ascii(T_TZ_OFFSET))
    ctx = _Ctx(doc, tz)
    for note in parsed.notes:
        ctx.warn(note)
    _common_header(ctx, h)

    if kind == "sr":
        root = build_content_tree(parsed, dec, C.canon, consume=True)
        _extract_sr(ctx, h, root, sop_class)
    elif kind == "rrdsr":
        NM.extract_rrdsr(ctx, build_content_tree(parsed, dec, C.canon))
    elif kind == "prdsr":
        NM.extract_patient_dose_sr(ctx, build_content_tree(parsed, dec, C.canon))
    elif kind == "nm_image":
        NM.extract_nm_header(ctx, h, NM.NM_IMAGE_CLASSES[sop_class])
    elif kind == "image":
        _extract_image(ctx, h, IMAGE_CLASSES[sop_class])
    else:
        _extract_mr(ctx, h)

    # study datetime fallbacks
    if doc.study_datetime is None:
        doc.study_datetime = ctx.da_tm(h.ascii(T_CONTENT_DATE), h.ascii(T_CONTENT_TIME), "Content Date")
        if doc.study_datetime is None:
            doc.study_datetime = doc.start_of_irradiation
        if doc.study_datetime is not None:
            ctx.warn("Study Date/Time absent; study datetime taken from content date/time or start of irradiation")
    _check_dates(ctx)
    # every text of the record was decoded by ``dec``: walk the record only when one of them kept a NUL
    if dec.nul_seen and _strip_nuls(doc):
        ctx.warn("text values contained NUL (0x00) characters (invalid in DICOM text); removed")
    return doc


def _clean(value: Any) -> tuple[Any, bool]:
    if isinstance(value, str):
        return (value.replace("\x00", ""), True) if "\x00" in value else (value, False)
    if isinstance(value, dict):
        changed = False
        for k in list(value):
            v, c = _clean(value[k])
            if c:
                value[k], changed = v, True
            if isinstance(k, str) and "\x00" in k:
                value[k.replace("\x00", "")] = value.pop(k)
                changed = True
        return value, changed
    if isinstance(value, list):
        changed = False
        for i, item in enumerate(value):
            v, c = _clean(item)
            if c:
                value[i], changed = v, True
        return value, changed
    if hasattr(value, "__dataclass_fields__"):
        return value, _strip_nuls(value)
    return value, False


def _strip_nuls(obj: Any) -> bool:
    """Remove NUL characters from every string of a record (PostgreSQL refuses them in text and JSON)."""
    changed = False
    for name in obj.__dataclass_fields__:
        v = getattr(obj, name)
        if v is None or isinstance(v, (int, float, bool, datetime, date)):
            continue
        nv, c = _clean(v)
        if c:
            setattr(obj, name, nv)
            changed = True
    return changed


def _implausible_when(value: datetime | date | None, now_naive: datetime, now_aware: datetime) -> str | None:
    """Why ``value`` is outside [1895-01-01, now + 1 day] (after its time zone), or None. An aware value is
    compared in UTC: 9999-12-31 23:00 at -14:00 is year 10000 in UTC (which PostgreSQL stores and Python
    cannot read back)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value, time(0, 0))
    try:
        if value.tzinfo is not None:
            utc = value.astimezone(timezone.utc)
            if utc > now_aware + FUTURE_SLACK:
                return "in the future"
            if utc.replace(tzinfo=None) < EARLIEST_PLAUSIBLE:
                return "before 1895"
            return None
    except OverflowError:  # beyond year 9999 (or before year 1) in UTC
        return "out of range"
    if value > now_naive + FUTURE_SLACK:
        return "in the future"
    if value < EARLIEST_PLAUSIBLE:
        return "before 1895"
    return None


def _check_dates(ctx: _Ctx) -> None:
    """Dates in the future (beyond a day of clock/time-zone slack) or before X-rays existed are not dates
    of an examination (a wrong device clock, or a placeholder such as 99991231): stored as null, flagged."""
    doc = ctx.doc
    now_naive, now_aware = datetime.now(), datetime.now(timezone.utc)
    for what, attr, holder in (("Study Date/Time", "study_datetime", doc),
                               ("Start of X-Ray Irradiation", "start_of_irradiation", doc),
                               ("End of X-Ray Irradiation", "end_of_irradiation", doc),
                               ("Patient's Birth Date", "birth_date", doc.patient)):
        value = getattr(holder, attr)
        why = _implausible_when(value, now_naive, now_aware)
        if why:
            ctx.flag(f"implausible date: {what} {value.isoformat()} is {why} (device clock or placeholder?); "
                     "stored as null")
            setattr(holder, attr, None)
    bad = [(e, why) for e in doc.events
           for why in (_implausible_when(e.datetime, now_naive, now_aware),) if why]
    if bad:
        first, why = bad[0]
        ctx.flag(f"implausible date: {len(bad)} of {len(doc.events)} irradiation event datetimes are {why} "
                 f"(first {first.datetime.isoformat()}; device clock or placeholder?); stored as null")
        for e, _ in bad:
            e.datetime = None


def _common_header(ctx: _Ctx, h: Header) -> None:
    doc = ctx.doc
    doc.study_instance_uid = h.ascii(T_STUDY_UID)
    doc.series_instance_uid = h.ascii(T_SERIES_UID)
    doc.modality = h.ascii(T_MODALITY)
    doc.accession_number = h.text(T_ACCESSION)
    doc.study_description = h.text(T_STUDY_DESC)
    doc.study_datetime = ctx.da_tm(h.ascii(T_STUDY_DATE), h.ascii(T_STUDY_TIME), "Study Date")

    p = doc.patient
    p.id = h.text(T_PATIENT_ID)
    p.issuer = h.text(T_ISSUER)
    p.name = h.text(T_PATIENT_NAME, pn=True)
    sex = (h.ascii(T_SEX) or "").upper()
    p.sex = sex if sex in ("M", "F", "O") else None
    if sex and p.sex is None:
        ctx.warn(f"Patient's Sex {sex!r} not one of M/F/O; stored as null")
    p.birth_date = parse_date(h.ascii(T_BIRTH_DATE))
    p.age_years = parse_age(h.ascii(T_AGE))
    if p.age_years is None and p.birth_date is not None and doc.study_datetime is not None:
        # Patient's Age absent: age at the study from birth date and study date (as OpenREM does)
        days = (doc.study_datetime.date() - p.birth_date).days
        if 0 <= days <= 130 * 366:
            p.age_years = round(days / 365.25, 2)
        else:
            ctx.warn(f"Patient's Birth Date {p.birth_date.isoformat()} is not plausible for a study on "
                     f"{doc.study_datetime.date().isoformat()}; age not derived")
    w = h.number(T_WEIGHT)
    p.weight_kg = w if w is not None and w > 0 else None
    size = h.number(T_SIZE)
    if size is not None and size > 0:
        if size > 3.0:
            ctx.warn(f"Patient's Size {size} is not plausible in metres (cm sent?); stored as null")
        else:
            p.size_m = size
    preg = h.number(T_PREGNANCY)
    if preg is not None:
        p.pregnancy_status = _PREGNANCY.get(int(preg))
        if p.pregnancy_status is None:
            ctx.warn(f"Pregnancy Status (0010,21C0) has invalid value {int(preg)}; stored as null")

    d = doc.device
    d.manufacturer = h.text(T_MANUFACTURER)
    d.model = h.text(T_MODEL)
    d.station_name = h.text(T_STATION)
    d.serial_number = h.text(T_SERIAL)
    d.software_versions = h.text(T_SOFTWARE)
    d.institution_name = h.text(T_INSTITUTION)
    d.department = h.text(T_DEPARTMENT)

    for tag, role, source in ((T_PERFORMING_PHYSICIAN, "performing_physician", "header_performing_physician"),
                              (T_OPERATORS, "operator", "header_operator")):
        raw = h._bytes(tag)
        if not raw:
            continue
        for part in raw.split(b"\\"):
            name = h.dec.text(part, pn=True).strip()
            if name:
                _add_participant(doc, Participant(name=name, role=role, source=source))


# ---------------------------------------------------------------------------
# SR documents
# ---------------------------------------------------------------------------
def _has_key(node: Node, keys: set, depth: int = 0) -> bool:
    if depth > 3:
        return False
    for ch in node.children:
        if ch.key in keys or _has_key(ch, keys, depth + 1):
            return True
    return False


def _extract_sr(ctx: _Ctx, h: Header, root: Node, sop_class: str) -> None:
    doc = ctx.doc
    template = root.template
    root_key = root.key
    proc: Code | None = None
    for ch in root.children:
        if ch.key == C.PROCEDURE_REPORTED and isinstance(ch.value, Code):
            proc = ch.value
            break
    doc.procedure_reported = _code_str(proc) if proc is not None else None

    # Siemens Arcadis private radiation summary
    if root_key == C.SIEMENS_RADSUM_ROOT:
        doc.source_kind = DOSE_SUMMARY
        _extract_radsum(ctx, root)
        return

    if template in ("10001", "10011"):
        route = template
    elif sop_class == ENHANCED_XRAY_DOSE_SR or template == "10040":
        route = "10040"
    else:
        route = None
        if proc is not None:
            if proc.key == C.CT_XRAY:
                route = "10011"
            elif proc.key in (C.PROJECTION_XRAY, C.MAMMOGRAPHY):
                route = "10001"
        if route is None:
            if _has_key(root, {C.CT_ACCUMULATED, C.CT_ACQUISITION}):
                route = "10011"
            elif _has_key(root, {C.ACCUMULATED_XRAY_DOSE, C.IRRADIATION_EVENT}):
                route = "10001"
        if route is not None:
            ctx.warn(
                f"ContentTemplateSequence {'missing' if not template else 'is ' + repr(template)}; "
                f"routed as TID {route} on {'Procedure reported' if proc is not None else 'content'}"
            )
    if route is None:
        rc = root.concept
        desc = f"({rc.value}, {rc.scheme}, {rc.meaning!r})" if rc is not None else "none"
        name = GENERIC_SR_CLASSES.get(sop_class, "X-Ray Radiation Dose SR")
        if sop_class in GENERIC_SR_CLASSES and root.children:
            # a well-formed report of a generic SR class (e.g. a radiology report): not a dose object
            raise NotADoseObject(
                f"not a dose object: {name} without radiation dose content: root concept {desc}, template "
                f"{template or 'none'}; no TID 10001/10011 content found"
            )
        raise ExtractionError(
            f"{name} without radiation dose content: root concept {desc}, template "
            f"{template or 'none'}; no TID 10001/10011 content found"
        )
    if root_key is not None and root_key != C.XRAY_DOSE_REPORT and route != "10040":
        ctx.warn(f"unexpected root concept {root.concept.value}/{root.concept.scheme}; extracted anyway")

    doc.source_kind = RDSR
    doc.template_id = route
    _doc_level(ctx, root)
    if route == "10011":
        doc.procedure_modality = "CT"
        _extract_ct(ctx, root)
    elif route == "10040":
        ctx.warn("Enhanced X-Ray Radiation Dose SR: best-effort extraction (per-source totals mapped to planes)")
        _extract_enhanced(ctx, root)
        _projection_modality(ctx, proc)
    else:
        _extract_projection(ctx, root)
        _projection_modality(ctx, proc)
    _device_fallbacks(ctx)
    _vendor_orientation(ctx)


def _doc_level(ctx: _Ctx, root: Node) -> None:
    """Observer context, scope, participants, start/end: common to TID 10001/10011."""
    doc = ctx.doc
    obs: dict[tuple, str | None] = {}
    for ch in root.children:
        k = ch.key
        if k in (C.DEVICE_OBSERVER_UID, C.DEVICE_OBSERVER_NAME, C.DEVICE_OBSERVER_MANUFACTURER,
                 C.DEVICE_OBSERVER_MODEL, C.DEVICE_OBSERVER_SERIAL, C.DEVICE_OBSERVER_LOCATION):
            if k not in obs:
                obs[k] = _text_value(ch)
        elif k == C.SCOPE_OF_ACCUMULATION and isinstance(ch.value, Code):
            doc.scope_of_accumulation = C.SCOPES.get(ch.value.key, (ch.value.meaning or ch.value.value).lower())
        elif k == C.ACQUISITION_DEVICE_TYPE and isinstance(ch.value, Code):
            doc.device.acquisition_device_type = C.ACQ_DEVICE_TYPES.get(
                ch.value.key, (ch.value.meaning or ch.value.value).lower().replace(" ", "_"))
        elif k == C.START_OF_IRRADIATION:
            doc.start_of_irradiation = ctx.dt(_text_value(ch), "Start of X-Ray Irradiation")
        elif k == C.END_OF_IRRADIATION:
            doc.end_of_irradiation = ctx.dt(_text_value(ch), "End of X-Ray Irradiation")
        elif k == C.PERSON_NAME:
            _person(ctx, ch)
        elif k == C.COMMENT and ctx.siemens_position is None:
            ctx.siemens_position = _siemens_position(_text_value(ch))
    d = doc.device
    d.device_observer_uid = obs.get(C.DEVICE_OBSERVER_UID)
    d.device_observer_name = obs.get(C.DEVICE_OBSERVER_NAME)
    ctx.obs = obs


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


# Siemens angiography (AXIOM-Artis, Artis zee/Q) write the patient position of the procedure into a private
# study-level Comment (121106): <Root><PatientPosition><Position SRData="HFS "/>...</Root>. The DICOM patient
# position terms (PS3.3 C.7.3.1.1.2) map to the TID 10003 items: Patient Table Relationship (113745), Patient
# Orientation (113743) and its modifier (113744), written with the same meanings as the standard codes.
_SIEMENS_POSITION = re.compile(r'<PatientPosition>\s*<Position\s+SRData="\s*([A-Z]{3,4})\s*"')
POSITION_TERMS: dict[str, tuple[str, str, str]] = {
    "HFS": ("headfirst", "recumbent", "supine"),
    "HFP": ("headfirst", "recumbent", "prone"),
    "FFS": ("feet-first", "recumbent", "supine"),
    "FFP": ("feet-first", "recumbent", "prone"),
    "HFDR": ("headfirst", "recumbent", "right lateral decubitus"),
    "HFDL": ("headfirst", "recumbent", "left lateral decubitus"),
    "FFDR": ("feet-first", "recumbent", "right lateral decubitus"),
    "FFDL": ("feet-first", "recumbent", "left lateral decubitus"),
}


def _siemens_position(comment: str | None) -> str | None:
    if not comment or "<PatientPosition>" not in comment:
        return None
    m = _SIEMENS_POSITION.search(comment)
    return m.group(1) if m else None


def _vendor_orientation(ctx: _Ctx) -> None:
    """Events without a standard Patient Orientation get the one of the Siemens private comment (source kept)."""
    pos = ctx.siemens_position
    if pos is None:
        return
    terms = POSITION_TERMS.get(pos)
    if terms is None:
        ctx.warn(f"Siemens private comment: patient position {pos!r} not recognised; orientation not set")
        return
    relationship, orientation, modifier = terms
    for ev in ctx.doc.events:
        if ev.extra.get("patient_orientation"):
            continue
        ev.extra["patient_table_relationship"] = ev.extra.get("patient_table_relationship") or relationship
        ev.extra["patient_orientation"] = orientation
        ev.extra["patient_orientation_modifier"] = modifier
        ev.extra["patient_orientation_source"] = f"Siemens private comment (PatientPosition {pos})"


# Philips (99PHI-IXR-XPER) give the collimation as four shutter positions in a private "Wedges and Shutters"
# container, in mm at 1 m from the focal spot (the convention of dosereg.skindose.engine and PySkinDose). With
# the source-to-detector distance they give the collimated field area at the image receptor, which is what
# Collimated Field Area (113790) holds: (left + right) x (top + bottom) x (SID / 1000 mm)^2.
_PHILIPS_SHUTTERS = tuple(f"Wedges and Shutters/{side} Shutter" for side in ("Left", "Right", "Top", "Bottom"))


def _private_mm(private: dict, key: str) -> float | None:
    v = private.get(key)
    if isinstance(v, dict):
        if v.get("unit") not in (None, "mm"):
            return None
        v = v.get("value")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _philips_field_area(ev: IrradiationEvent) -> None:
    if ev.collimated_field_area_m2 is not None:
        return
    private = ev.extra.get("private")
    if not isinstance(private, dict) or _PHILIPS_SHUTTERS[0] not in private:
        return
    shutters = [_private_mm(private, k) for k in _PHILIPS_SHUTTERS]
    sid = ev.distance_source_to_detector_mm or _private_mm(private, "Final Distance Source to Detector")
    if any(v is None for v in shutters) or not sid or sid <= 0:
        return
    left, right, top, bottom = (v or 0.0 for v in shutters)
    scale = sid / 1000.0
    width_mm, height_mm = (left + right) * scale, (top + bottom) * scale
    if width_mm <= 0 or height_mm <= 0:
        return
    ev.collimated_field_area_m2 = width_mm * height_mm / 1e6
    ev.extra["collimated_field_size_mm"] = [round(width_mm, 3), round(height_mm, 3)]
    ev.extra["collimated_field_area_source"] = "Philips private shutters at 1 m, scaled to the source-to-detector distance"


def _projection_modality(ctx: _Ctx, proc: Code | None) -> None:
    doc = ctx.doc
    if proc is not None and proc.key == C.MAMMOGRAPHY:
        doc.procedure_modality = "MG"
        return
    fluoro = any(e.event_type == "fluoroscopy" for e in doc.events) or any(
        (p.fluoro_time_total_s or 0) > 0 or (p.fluoro_dap_total_gy_cm2 or 0) > 0 for p in doc.planes)
    if fluoro:
        doc.procedure_modality = "RF"
    elif any(e.agd_mgy is not None for e in doc.events) or doc.breasts:
        doc.procedure_modality = "MG"
    else:
        doc.procedure_modality = "DX"


# --- TID 10001 ---------------------------------------------------------------------
_PLANE_NUM = {
    C.DAP_TOTAL: ("dap_total_gy_cm2", "dap_gy_cm2"),
    C.DOSE_RP_TOTAL: ("dose_rp_total_gy", "dose_gy"),
    C.FLUORO_DAP_TOTAL: ("fluoro_dap_total_gy_cm2", "dap_gy_cm2"),
    C.ACQ_DAP_TOTAL: ("acquisition_dap_total_gy_cm2", "dap_gy_cm2"),
    C.FLUORO_DOSE_RP_TOTAL: ("fluoro_dose_rp_total_gy", "dose_gy"),
    C.ACQ_DOSE_RP_TOTAL: ("acquisition_dose_rp_total_gy", "dose_gy"),
    C.TOTAL_FLUORO_TIME: ("fluoro_time_total_s", "time_s"),
    C.TOTAL_ACQ_TIME: ("acquisition_time_total_s", "time_s"),
}

_EVENT_NUM = {
    C.DAP: ("dap_gy_cm2", "dap_gy_cm2"),
    C.DOSE_RP: ("dose_rp_gy", "dose_gy"),
    C.ENTRANCE_EXPOSURE_AT_RP: ("entrance_exposure_at_rp_mgy", "dose_mgy"),
    C.KVP: ("kvp", "kv"),
    C.TUBE_CURRENT: ("tube_current_ma", "ma"),
    C.EXPOSURE_TIME: ("exposure_time_ms", "time_ms"),
    C.EXPOSURE_TIME_CT: ("exposure_time_ms", "time_ms"),
    C.PULSE_WIDTH: ("pulse_width_ms", "time_ms"),
    C.PULSE_RATE: ("pulse_rate_per_s", "rate_per_s"),
    C.NUMBER_OF_PULSES: ("number_of_pulses", "count"),
    C.IRRADIATION_DURATION: ("irradiation_duration_s", "time_s"),
    C.POSITIONER_PRIMARY_ANGLE: ("positioner_primary_angle_deg", "angle_deg"),
    C.POSITIONER_SECONDARY_ANGLE: ("positioner_secondary_angle_deg", "angle_deg"),
    C.DISTANCE_SOURCE_TO_DETECTOR: ("distance_source_to_detector_mm", "length_mm"),
    C.COLLIMATED_FIELD_AREA: ("collimated_field_area_m2", "area_m2"),
    C.EXPOSURE_INDEX: ("exposure_index", "count"),
    C.DEVIATION_INDEX: ("deviation_index", "count"),
}
_EVENT_EXTRA_NUM = {
    C.EXPOSURE: ("exposure_uas", "charge_uas"),
    C.AVERAGE_TUBE_CURRENT: ("average_tube_current_ma", "ma"),
    C.TARGET_EXPOSURE_INDEX: ("target_exposure_index", "count"),
    C.FOCAL_SPOT_SIZE: ("focal_spot_size_mm", "length_mm"),
    C.DISTANCE_SOURCE_TO_ISOCENTER: ("distance_source_to_isocenter_mm", "length_mm"),
    C.DISTANCE_SOURCE_TO_RP: ("distance_source_to_rp_mm", "length_mm"),
    C.TABLE_LONGITUDINAL: ("table_longitudinal_position_mm", "length_mm"),
    C.TABLE_LATERAL: ("table_lateral_position_mm", "length_mm"),
    C.TABLE_HEIGHT: ("table_height_position_mm", "length_mm"),
}
_EVENT_EXTRA_CODE = {
    C.XRAY_GRID: "grid",
    C.PATIENT_ORIENTATION: "patient_orientation",
    C.PATIENT_TABLE_RELATIONSHIP: "patient_table_relationship",
}
_SIEMENS_FRAMES = re.compile(r'<NumOfFrames SRData="\s*(\d+)\s*"')
# TID 10003B allows one value per pulse (VM 1-n as repeated items) for these: the event keeps their mean,
# and extra["per_pulse"] keeps mean, minimum, maximum, count and the reported values.
_PER_PULSE = {"kvp", "tube_current_ma", "pulse_width_ms", "exposure_uas"}


def _summarise_per_pulse(ev: IrradiationEvent, per_pulse: dict[str, list[float]]) -> None:
    for attr, values in per_pulse.items():
        mean = sum(values) / len(values)
        if attr == "exposure_uas":  # kept in extra (no column)
            ev.extra[attr] = mean
        else:
            setattr(ev, attr, mean)
        if len(values) > 1:
            ev.extra.setdefault("per_pulse", {})[attr] = {
                "mean": mean, "min": min(values), "max": max(values), "count": len(values), "values": values,
            }


def _plane_of(node: Node) -> str | None:
    for ch in node.children:
        if ch.key == C.ACQUISITION_PLANE and isinstance(ch.value, Code):
            p = C.PLANES.get(ch.value.key)
            if p == "all":
                return "single"
            return p
    return None


def _rp_definition(node: Node) -> tuple[str | None, str | None]:
    v = node.value
    if isinstance(v, Code):
        return (v.meaning or C.RP_DEFINITIONS.get(v.value) or v.value), f"{v.scheme}:{v.value}"
    text = _text_value(node)
    if text:
        for code, meaning in C.RP_DEFINITIONS.items():
            if meaning.lower() == text.lower():
                return text, f"DCM:{code}"
    return text, None


def _extract_projection(ctx: _Ctx, root: Node) -> None:
    doc = ctx.doc
    for ch in root.children:
        k = ch.key
        if k == C.ACCUMULATED_XRAY_DOSE:
            _plane_totals(ctx, ch)
        elif k == C.IRRADIATION_EVENT:
            ev = _projection_event(ctx, ch)
            doc.events.append(ev)
    _complete_planes(ctx)
    if not doc.events and not any(pt.dap_total_gy_cm2 is not None or pt.dose_rp_total_gy is not None
                                  for pt in doc.planes):
        ctx.warn("empty report: no irradiation event and no accumulated dose (DAP or Ka,r) in this X-Ray "
                 "Radiation Dose SR; nothing is recorded for this procedure")


def _plane_totals(ctx: _Ctx, node: Node, plane: str | None = None) -> PlaneTotals:
    plane = plane or _plane_of(node)
    if plane is None:
        plane = "single"
        ctx.warn("Accumulated X-Ray Dose without Acquisition Plane; assumed single plane")
    pt = None
    for existing in ctx.doc.planes:
        if existing.plane == plane:
            pt = existing
            ctx.warn(f"more than one accumulated dose container for plane {plane}; merged")
            break
    if pt is None:
        pt = PlaneTotals(plane=plane)
        ctx.doc.planes.append(pt)
    _fill_plane(ctx, pt, node, 0)
    return pt


def _fill_plane(ctx: _Ctx, pt: PlaneTotals, node: Node, depth: int) -> None:
    for ch in node.children:
        k = ch.key
        spec = _PLANE_NUM.get(k)
        if spec is not None:
            if ch.vt != "NUM":
                _not_num(ctx, ch)
            elif getattr(pt, spec[0]) is None:
                setattr(pt, spec[0], ctx.num(ch, spec[1]))
                # sent (maybe empty or in an unknown unit): never replaced by a derived value
                ctx.plane_sent.setdefault(pt.plane, set()).add(spec[0])
        elif k == C.TOTAL_FRAMES:
            v = ctx.num(ch, "count")
            pt.total_frames = int(round(v)) if v is not None else None
        elif k == C.REFERENCE_POINT_DEFINITION:
            pt.reference_point_definition, pt.reference_point_code = _rp_definition(ch)
        elif k == M.ACCUMULATED_AGD:
            M.accumulated_item(ctx, ch)  # TID 10005, per breast
        elif ch.vt == "CONTAINER" and k not in (C.CALIBRATION,) and depth < 3:
            # TID 10004/10005/10007 are normally inlined, but tolerate wrapping containers
            _fill_plane(ctx, pt, ch, depth + 1)


def _not_num(ctx: _Ctx, node: Node) -> None:
    what = (node.concept.meaning or node.concept.value) if node.concept is not None else "value"
    ctx.flag(f"{what}: value type {node.vt or 'missing'} where NUM is expected; ignored")


def _flatten_private(ctx: _Ctx, node: Node, out: dict, prefix: str, depth: int) -> None:
    for ch in node.children:
        c = ch.concept
        if c is None:
            continue
        name = prefix + (c.meaning or f"{c.scheme}:{c.value}")
        if ch.vt == "CONTAINER":
            if depth < 3:
                _flatten_private(ctx, ch, out, name + "/", depth + 1)
            continue
        v = ch.value
        if ch.vt == "NUM":
            n = U.parse_number(v) if v is not None else None
            unit = ch.unit.value if ch.unit is not None else None
            out[name] = n if not unit or unit == "1" else {"value": n, "unit": unit}
        elif isinstance(v, Code):
            out[name] = v.meaning or v.value
        else:
            out[name] = v


def _projection_event(ctx: _Ctx, node: Node) -> IrradiationEvent:
    ev = IrradiationEvent()
    extra = ev.extra
    filters: list[dict] = []
    per_pulse: dict[str, list[float]] = {}
    for ch in node.children:
        k = ch.key
        if k is None:
            continue
        if k in M.EVENT_CODES and M.event_item(ctx, ev, ch):  # mammography rows (TID 10010)
            continue
        spec = _EVENT_NUM.get(k)
        if spec is not None:
            if ch.vt == "NUM":
                v = ctx.num(ch, spec[1])
                if spec[0] in _PER_PULSE:
                    if v is not None:
                        per_pulse.setdefault(spec[0], []).append(v)
                elif getattr(ev, spec[0]) is None:
                    setattr(ev, spec[0], v)
            else:
                _not_num(ctx, ch)
            continue
        spec = _EVENT_EXTRA_NUM.get(k)
        if spec is not None:
            if ch.vt == "NUM":
                v = ctx.num(ch, spec[1])
                if v is not None and spec[0] in _PER_PULSE:
                    per_pulse.setdefault(spec[0], []).append(v)
                elif v is not None:
                    extra[spec[0]] = v
            else:
                _not_num(ctx, ch)
            continue
        if k == C.ACQUISITION_PLANE:
            if isinstance(ch.value, Code):
                p = C.PLANES.get(ch.value.key)
                ev.plane = "single" if p == "all" else p
        elif k == C.DATETIME_STARTED:
            ev.datetime = ctx.dt(_text_value(ch), "DateTime Started")
        elif k == C.IRRADIATION_EVENT_TYPE:
            if isinstance(ch.value, Code):
                ev.event_type = C.EVENT_TYPES.get(ch.value.key)
                ev.event_type_code = f"{ch.value.scheme}:{ch.value.value}"
                if ev.event_type is None:
                    ctx.warn(f"unknown Irradiation Event Type {ev.event_type_code} ({ch.value.meaning!r})")
        elif k == C.ACQUISITION_PROTOCOL:
            ev.protocol = _text_value(ch)
        elif k == C.REFERENCE_POINT_DEFINITION:
            ev.reference_point_definition, code = _rp_definition(ch)
            if code:
                extra["reference_point_code"] = code
        elif k == C.IRRADIATION_EVENT_UID or (k == C.IRRADIATION_EVENT_UID_ALT and ev.irradiation_event_uid is None):
            ev.irradiation_event_uid = _text_value(ch)
        elif k == C.FLUORO_MODE:
            if isinstance(ch.value, Code):
                ev.fluoro_mode = C.FLUORO_MODES.get(ch.value.key)
        elif k == C.TARGET_REGION:
            _target_region(ev, ch)
            for mod in ch.children:  # Laterality is a concept modifier of the Target Region (mammography)
                if mod.key == M.LATERALITY:
                    M.event_item(ctx, ev, mod)
        elif k == C.COMMENT:
            ev.comment = _text_value(ch)
            if ev.comment and "<NumOfFrames" in ev.comment and ev.number_of_frames is None:
                m = _SIEMENS_FRAMES.search(ev.comment)
                if m:
                    ev.number_of_frames = int(m.group(1))
        elif k == C.XRAY_FILTERS:
            f: dict[str, Any] = {}
            for fc in ch.children:
                fk = fc.key
                if fk == C.XRAY_FILTER_TYPE:
                    f["type"] = _text_value(fc)
                elif fk == C.XRAY_FILTER_MATERIAL:
                    f["material"] = _text_value(fc)
                elif fk == C.XRAY_FILTER_THICKNESS_MIN:
                    f["thickness_min_mm"] = ctx.num(fc, "length_mm")
                elif fk == C.XRAY_FILTER_THICKNESS_MAX:
                    f["thickness_max_mm"] = ctx.num(fc, "length_mm")
            filters.append(f)
        elif k in _EVENT_EXTRA_CODE:
            extra[_EVENT_EXTRA_CODE[k]] = _text_value(ch)
            if k == C.PATIENT_ORIENTATION:
                for mc in ch.children:
                    extra["patient_orientation_modifier"] = _text_value(mc)
        elif k == C.PERSON_NAME:
            _person(ctx, ch)
        elif k == C.PERFORMING_PHYSICIAN_TEXT or k == C.PHILIPS_PERFORMING_PHYSICIAN:
            name = _text_value(ch)
            if name:
                _add_participant(ctx.doc, Participant(name=name, role="performing_physician", source="event_text"))
        elif k == C.PHILIPS_NUMBER_OF_FRAMES:
            v = U.parse_number(ch.value) if isinstance(ch.value, str) else None
            if v is not None:
                ev.number_of_frames = int(round(v))
        elif k == C.PHILIPS_FLUORO_FLAVOUR:
            ev.dose_mode = _text_value(ch)
        elif k == C.ACQUIRED_IMAGE:
            if ch.value:
                extra.setdefault("acquired_image_uids", []).append(ch.value)
        if k[1].startswith("99"):
            priv = extra.setdefault("private", {})
            if ch.vt == "CONTAINER":
                _flatten_private(ctx, ch, priv, (ch.concept.meaning or k[0]) + "/", 1)  # type: ignore[union-attr]
            else:
                tmp: dict = {}
                holder = Node()
                holder.children = [ch]
                _flatten_private(ctx, holder, tmp, "", 0)
                priv.update(tmp)
    _summarise_per_pulse(ev, per_pulse)
    _philips_field_area(ev)
    if ev.tube_current_ma is None and "average_tube_current_ma" in extra:
        ev.tube_current_ma = extra["average_tube_current_ma"]
    if filters:
        extra["filters"] = filters
        mats = [f.get("material") for f in filters if f.get("material")]
        if mats:
            ev.filter_material = "; ".join(mats)
    if ev.plane is None:
        ev.plane = "single"
    if ev.irradiation_event_uid is None:
        ctx.warn("Irradiation event without Irradiation Event UID (113769)")
    return ev


def _target_region(ev: IrradiationEvent, node: Node) -> None:
    v = node.value
    if isinstance(v, Code):
        ev.target_region = v.meaning or v.value
        ev.target_region_code = _code_str(v)
    else:
        ev.target_region = _text_value(node)


def _complete_planes(ctx: _Ctx) -> None:
    """Derive totals from events where the device omitted them."""
    doc = ctx.doc
    by_plane: dict[str, list[IrradiationEvent]] = {}
    for ev in doc.events:
        by_plane.setdefault(ev.plane or "single", []).append(ev)
    sent_planes = {p.plane for p in doc.planes}
    for plane, events in by_plane.items():
        pt = next((p for p in doc.planes if p.plane == plane), None)
        created = pt is None
        if pt is None and plane == "single" and sent_planes & {"A", "B"}:
            # the device's accumulated data name planes A/B while these events say "single plane": a total
            # derived from them would count the same exposure twice. Keep the device's totals; flag the report.
            ctx.warn(f"inconsistent planes: accumulated dose data name plane(s) "
                     f"{', '.join(sorted(sent_planes & {'A', 'B'}))} while {len(events)} irradiation event(s) say "
                     f"single plane; no total derived from those events (it would double count)")
            continue
        if pt is None:
            pt = PlaneTotals(plane=plane)
            doc.planes.append(pt)

        def total(attr: str, sel: Callable[[IrradiationEvent], bool] = lambda e: True) -> float | None:
            vals = [getattr(e, attr) for e in events if sel(e) and getattr(e, attr) is not None]
            return sum(vals) if vals else None

        is_fluoro = (lambda e: e.event_type == "fluoroscopy")
        not_fluoro = (lambda e: e.event_type is not None and e.event_type != "fluoroscopy")
        derived_fields = []
        sent = ctx.plane_sent.get(plane, set())
        for attr, value in (
            ("dap_total_gy_cm2", lambda: total("dap_gy_cm2")),
            ("dose_rp_total_gy", lambda: total("dose_rp_gy")),
        ):
            if getattr(pt, attr) is None and attr not in sent:
                v = value()
                if v is not None:
                    setattr(pt, attr, v)
                    derived_fields.append(attr)
        if created:
            for attr, value in (
                ("fluoro_dap_total_gy_cm2", lambda: total("dap_gy_cm2", is_fluoro)),
                ("acquisition_dap_total_gy_cm2", lambda: total("dap_gy_cm2", not_fluoro)),
                ("fluoro_dose_rp_total_gy", lambda: total("dose_rp_gy", is_fluoro)),
                ("acquisition_dose_rp_total_gy", lambda: total("dose_rp_gy", not_fluoro)),
                ("fluoro_time_total_s", lambda: total("irradiation_duration_s", is_fluoro)),
                ("acquisition_time_total_s", lambda: total("irradiation_duration_s", not_fluoro)),
            ):
                v = value()
                if v is not None:
                    setattr(pt, attr, v)
                    derived_fields.append(attr)
        if pt.reference_point_definition is None:
            defs = Counter(e.reference_point_definition for e in events if e.reference_point_definition)
            if defs:
                pt.reference_point_definition = defs.most_common(1)[0][0]
                codes_ = [e.extra.get("reference_point_code") for e in events
                          if e.reference_point_definition == pt.reference_point_definition]
                pt.reference_point_code = next((c for c in codes_ if c), None)
        if derived_fields:
            pt.derived = True
            ctx.warn(f"plane {plane}: device omitted {', '.join(derived_fields)}; computed from "
                     f"{len(events)} irradiation events (derived)")


# --- Siemens Arcadis 99SMS_RADSUM ---------------------------------------------------
def _extract_radsum(ctx: _Ctx, root: Node) -> None:
    doc = ctx.doc
    doc.template_id = None
    doc.procedure_modality = "RF"
    pt = PlaneTotals(plane="single")
    for ch in root.children:
        what = C.SIEMENS_RADSUM.get(ch.key)  # type: ignore[arg-type]
        if what == "dap":
            pt.dap_total_gy_cm2 = ctx.num(ch, "dap_gy_cm2")
        elif what == "air_kerma":
            pt.dose_rp_total_gy = ctx.num(ch, "dose_gy")
        elif what == "fluoro_time":
            pt.fluoro_time_total_s = ctx.num(ch, "time_s")
        elif what == "start":
            doc.start_of_irradiation = ctx.dt(_text_value(ch), "Start of the examination")
        elif what == "end":
            doc.end_of_irradiation = ctx.dt(_text_value(ch), "End of the examination")
    doc.planes.append(pt)
    ctx.warn("Siemens private Radiation Summary Report (99SMS_RADSUM): accumulated totals only, no events")
    _device_fallbacks(ctx)


# --- TID 10011 CT -----------------------------------------------------------------------
def _extract_ct(ctx: _Ctx, root: Node) -> None:
    doc = ctx.doc
    for ch in root.children:
        k = ch.key
        if k == C.CT_ACCUMULATED:
            for ac in ch.children:
                ak = ac.key
                if ak == C.CT_TOTAL_EVENTS:
                    v = ctx.num(ac, "count")
                    doc.ct_total_events = int(round(v)) if v is not None else None
                elif ak == C.CT_DLP_TOTAL:
                    doc.dlp_total_mgy_cm = ctx.num(ac, "dlp_mgy_cm")
        elif k == C.CT_ACQUISITION:
            doc.events.append(_ct_event(ctx, ch))
    if doc.dlp_total_mgy_cm is None and doc.events:
        vals = [e.dlp_mgy_cm for e in doc.events if e.dlp_mgy_cm is not None]
        if vals:
            doc.dlp_total_mgy_cm = sum(vals)
            ctx.warn(f"CT Dose Length Product Total missing; computed from {len(vals)} events (derived)")
    if doc.ct_total_events is not None and doc.ct_total_events != len(doc.events):
        ctx.warn(f"Total Number of Irradiation Events says {doc.ct_total_events} but "
                 f"{len(doc.events)} CT Acquisition containers are present")


def _ct_event(ctx: _Ctx, node: Node) -> IrradiationEvent:
    ev = IrradiationEvent()
    extra = ev.extra
    sources: list[dict] = []
    for ch in node.children:
        k = ch.key
        if k == C.ACQUISITION_PROTOCOL:
            ev.protocol = _text_value(ch)
        elif k == C.TARGET_REGION:
            _target_region(ev, ch)
        elif k == C.CT_ACQUISITION_TYPE and isinstance(ch.value, Code):
            ev.event_type = C.EVENT_TYPES.get(ch.value.key)
            ev.event_type_code = f"{ch.value.scheme}:{ch.value.value}"
            if ev.event_type is None:
                ctx.warn(f"unknown CT Acquisition Type {ev.event_type_code} ({ch.value.meaning!r})")
        elif k == C.IRRADIATION_EVENT_UID:
            ev.irradiation_event_uid = _text_value(ch)
        elif k == C.DATETIME_STARTED:
            ev.datetime = ctx.dt(_text_value(ch), "DateTime Started")
        elif k == C.COMMENT:
            ev.comment = _text_value(ch)
        elif k == C.CT_MODULATION_TYPE:
            extra["xray_modulation_type"] = _text_value(ch)
        elif k == C.PERSON_NAME:
            _person(ctx, ch)
        elif k == C.CT_ACQ_PARAMETERS:
            for pc in ch.children:
                pk = pc.key
                if pk in (C.EXPOSURE_TIME_CT, C.EXPOSURE_TIME):
                    ev.ct_exposure_time_s = ctx.num(pc, "time_s")
                elif pk == C.CT_SCANNING_LENGTH:
                    ev.ct_scanning_length_mm = ctx.num(pc, "length_mm")
                elif pk == C.CT_PITCH:
                    ev.ct_pitch_factor = ctx.num(pc, "count")
                elif pk == C.CT_SINGLE_COLLIMATION:
                    extra["nominal_single_collimation_mm"] = ctx.num(pc, "length_mm")
                elif pk == C.CT_TOTAL_COLLIMATION:
                    extra["nominal_total_collimation_mm"] = ctx.num(pc, "length_mm")
                elif pk == C.CT_EXPOSED_RANGE:
                    extra["exposed_range_mm"] = ctx.num(pc, "length_mm")
                elif pk == C.CT_RECONSTRUCTABLE_LENGTH:
                    extra["reconstructable_length_mm"] = ctx.num(pc, "length_mm")
                elif pk == C.CT_NUMBER_OF_SOURCES:
                    v = ctx.num(pc, "count")
                    extra["number_of_xray_sources"] = int(round(v)) if v is not None else None
                elif pk == C.CT_SOURCE_PARAMETERS:
                    src: dict[str, Any] = {}
                    for sc in pc.children:
                        sk = sc.key
                        if sk == C.CT_SOURCE_ID:
                            src["id"] = _text_value(sc)
                        elif sk == C.KVP:
                            src["kvp"] = ctx.num(sc, "kv")
                        elif sk == C.TUBE_CURRENT:
                            src["tube_current_ma"] = ctx.num(sc, "ma")
                        elif sk == C.CT_MAX_TUBE_CURRENT:
                            src["max_tube_current_ma"] = ctx.num(sc, "ma")
                        elif sk == C.CT_ROTATION_TIME:
                            src["rotation_time_s"] = ctx.num(sc, "time_s")
                    sources.append(src)
        elif k == C.CT_DOSE:
            _ct_dose(ctx, ev, ch)
        elif k in (C.DOSE_CHECK_ALERT, C.DOSE_CHECK_NOTIFICATION):
            _dose_check(ctx, ev, ch)
    if sources:
        ev.kvp = sources[0].get("kvp")
        ev.tube_current_ma = sources[0].get("tube_current_ma")
        if len(sources) > 1:
            extra["sources"] = sources
        elif sources[0].get("max_tube_current_ma") is not None:
            extra["max_tube_current_ma"] = sources[0]["max_tube_current_ma"]
        if sources[0].get("rotation_time_s") is not None:
            extra["rotation_time_s"] = sources[0]["rotation_time_s"]
    if ev.irradiation_event_uid is None:
        ctx.warn("CT Acquisition without Irradiation Event UID (113769)")
    return ev


def _ct_dose(ctx: _Ctx, ev: IrradiationEvent, node: Node) -> None:
    for ch in node.children:
        k = ch.key
        if k == C.CT_MEAN_CTDIVOL:
            ev.ctdivol_mgy = ctx.num(ch, "dose_mgy")
        elif k == C.CT_DLP:
            ev.dlp_mgy_cm = ctx.num(ch, "dlp_mgy_cm")
        elif k == C.CT_SSDE:
            ev.ssde_mgy = ctx.num(ch, "dose_mgy")
        elif k == C.CT_PHANTOM_TYPE and isinstance(ch.value, Code):
            ev.ctdiw_phantom = C.PHANTOMS.get(ch.value.key)
        elif k == C.CT_EFFECTIVE_DOSE:
            if ch.value is not None:
                ev.extra["effective_dose_msv"] = U.parse_number(ch.value)
        elif k in (C.DOSE_CHECK_ALERT, C.DOSE_CHECK_NOTIFICATION):
            _dose_check(ctx, ev, ch)


def _dose_check(ctx: _Ctx, ev: IrradiationEvent, node: Node) -> None:
    dc = ev.dose_check or DoseCheck()
    ev.dose_check = dc
    for ch in node.children:
        k = ch.key
        if k in C.DC_FIELDS_BOOL:
            setattr(dc, C.DC_FIELDS_BOOL[k], _yes_no(ch))
        elif k in C.DC_FIELDS_NUM:
            attr, q = C.DC_FIELDS_NUM[k]
            setattr(dc, attr, ctx.num(ch, q))
        elif k == C.DC_REASON:
            dc.reason_for_proceeding = _text_value(ch)
        elif k == C.PERSON_NAME:
            dc.authorizing_person = _text_value(ch)
            if dc.authorizing_person:
                _person(ctx, ch)


# --- Enhanced X-Ray Radiation Dose SR (best effort) ---------------------------------------
def _extract_enhanced(ctx: _Ctx, root: Node) -> None:
    doc = ctx.doc
    accum = [ch for ch in root.children if ch.key in (C.ENH_ACCUMULATED_DOSE, C.ACCUMULATED_XRAY_DOSE)]
    names = ["single"] if len(accum) == 1 else ["A", "B", "C", "D"]
    for i, node in enumerate(accum[:4]):
        plane = _plane_of(node) or names[i]
        _plane_totals(ctx, node, plane)
    for ch in root.children:
        if ch.key in (C.IRRADIATION_EVENT, C.ENH_EVENT_SUMMARY, C.ENH_IRRADIATION_DETAILS):
            ev = _projection_event(ctx, ch)
            # values may sit in nested containers in TID 10043+: search one level down
            for sub in ch.children:
                if sub.vt == "CONTAINER":
                    inner = _projection_event(ctx, sub)
                    for attr in ("dap_gy_cm2", "dose_rp_gy", "kvp", "tube_current_ma", "irradiation_event_uid",
                                 "datetime", "event_type", "event_type_code"):
                        if getattr(ev, attr) is None and getattr(inner, attr) is not None:
                            setattr(ev, attr, getattr(inner, attr))
            doc.events.append(ev)
    _complete_planes(ctx)


# ---------------------------------------------------------------------------
# Image headers
# ---------------------------------------------------------------------------
def _extract_image(ctx: _Ctx, h: Header, modality_hint: str) -> None:
    doc = ctx.doc
    doc.source_kind = IMAGE_HEADER
    mod = (doc.modality or modality_hint).upper()
    doc.procedure_modality = {"CR": "DX", "DX": "DX", "PX": "DX", "IO": "DX", "MG": "MG", "CT": "CT",
                              "XA": "XA", "RF": "RF"}.get(mod, modality_hint if modality_hint != "CR" else "DX")
    ev = IrradiationEvent(irradiation_event_uid=doc.sop_instance_uid)
    extra = ev.extra
    hdr_uid = h.ascii(T_IRRADIATION_EVENT_UID)
    if hdr_uid:
        extra["header_irradiation_event_uid"] = hdr_uid
    ev.datetime = ctx.dt(h.ascii(T_ACQ_DATETIME), "Acquisition DateTime") if h.ascii(T_ACQ_DATETIME) else None
    if ev.datetime is None:
        ev.datetime = ctx.da_tm(h.ascii(T_ACQ_DATE), h.ascii(T_ACQ_TIME), "Acquisition Date") or ctx.da_tm(
            h.ascii(T_CONTENT_DATE), h.ascii(T_CONTENT_TIME))
    ev.protocol = h.text(T_PROTOCOL) or h.text(T_SERIES_DESC)
    ev.plane = "single"
    for tag, label in ((T_DAP, "Image and Fluoroscopy Area Dose Product (0018,115E)"),
                       (T_ACQ_IMAGE_AREA_DAP, "Acquired Image Area Dose Product (0018,9473)"),
                       (T_ENTRANCE_DOSE_MGY, "Entrance Dose in mGy (0040,8302)"),
                       (T_ENTRANCE_DOSE_DGY, "Entrance Dose (0040,0302)"), (T_CTDIVOL, "CTDIvol (0018,9345)")):
        raw = h._bytes(tag)
        if raw and raw.strip(b" \x00") and h.number(tag) is None:  # NaN, infinity or text where a dose was sent
            shown = raw.strip(b" \x00")[:40].decode("latin-1") if tag not in _BINARY else "non-finite number"
            ctx.flag(f"unreadable dose value: {label} {shown!r}; stored as null, the study's dose is incomplete")

    dap = h.number(T_DAP)
    if dap is not None:
        ev.dap_gy_cm2 = check_dose(dap * 0.1, "dap_gy_cm2", "Image and Fluoroscopy Area Dose Product (0018,115E)",
                                   f"{dap:g} dGy.cm2")  # dGy.cm2 -> Gy.cm2
    elif h.number(T_ACQ_IMAGE_AREA_DAP) is not None:
        ev.dap_gy_cm2 = check_dose(h.number(T_ACQ_IMAGE_AREA_DAP) * 0.1,  # type: ignore[operator]
                                   "dap_gy_cm2", "Acquired Image Area Dose Product (0018,9473)")
    ed_mgy = check_dose(h.number(T_ENTRANCE_DOSE_MGY), "dose_mgy", "Entrance Dose in mGy (0040,8302)")
    if ed_mgy is not None:
        ev.entrance_exposure_at_rp_mgy = ed_mgy
        extra["entrance_dose_source"] = "(0040,8302) Entrance Dose in mGy"
    else:
        ed_dgy = h.number(T_ENTRANCE_DOSE_DGY)
        if ed_dgy is not None:
            ev.entrance_exposure_at_rp_mgy = check_dose(ed_dgy * 100.0, "dose_mgy", "Entrance Dose (0040,0302)",
                                                        f"{ed_dgy:g} dGy")
            extra["entrance_dose_source"] = "(0040,0302) Entrance Dose (dGy)"
    ev.kvp = h.number(T_KVP)
    tc = h.number(T_TUBE_CURRENT)
    if tc is None and h.number(T_TUBE_CURRENT_UA) is not None:
        tc = h.number(T_TUBE_CURRENT_UA) / 1000.0  # type: ignore[operator]
    ev.tube_current_ma = tc
    et = h.number(T_EXPOSURE_TIME)
    if et is None and h.number(T_EXPOSURE_TIME_US) is not None:
        et = h.number(T_EXPOSURE_TIME_US) / 1000.0  # type: ignore[operator]
    ev.exposure_time_ms = et
    uas = h.number(T_EXPOSURE_UAS)
    if uas is None and h.number(T_EXPOSURE_MAS) is not None:
        uas = h.number(T_EXPOSURE_MAS) * 1000.0  # type: ignore[operator]
    if uas is not None:
        extra["exposure_uas"] = uas
    ev.exposure_index = h.number(T_EI)
    ev.deviation_index = h.number(T_DI)
    tei = h.number(T_TARGET_EI)
    if tei is not None:
        extra["target_exposure_index"] = tei
    ev.distance_source_to_detector_mm = h.number(T_DIST_SRC_DET)
    ev.positioner_primary_angle_deg = h.number(T_PRIMARY_ANGLE)
    ev.positioner_secondary_angle_deg = h.number(T_SECONDARY_ANGLE)
    ev.filter_material = h.text(T_FILTER_MATERIAL)
    nf = h.number(T_NUMBER_OF_FRAMES)
    ev.number_of_frames = int(nf) if nf is not None else None
    code = h.code(T_ANATOMIC_REGION_SEQ)
    if code is not None:
        ev.target_region = code[2] or code[0]
        ev.target_region_code = C.canon_str(code[0], code[1]) if code[0] else None
    else:
        ev.target_region = h.text(T_BODY_PART)
    rm = (h.ascii(T_RADIATION_MODE) or "").upper()
    if rm in ("CONTINUOUS", "PULSED"):
        ev.fluoro_mode = rm.lower()
    setting = (h.ascii(T_RADIATION_SETTING) or "").upper()
    if mod == "CT":
        ctdi = h.number(T_CTDIVOL)
        if ctdi is None:
            for fg in h.seq(T_SHARED_FG) + h.seq(T_PERFRAME_FG)[:1]:
                for ce in fg.seq(T_CT_EXPOSURE_SEQ):
                    ctdi = ce.number(T_CTDIVOL)
                    if ctdi is not None:
                        break
                if ctdi is not None:
                    break
        ev.ctdivol_mgy = check_dose(ctdi, "dose_mgy", "CTDIvol (0018,9345)")
        ph = h.code(T_CTDI_PHANTOM_SEQ)
        if ph is not None:
            ev.ctdiw_phantom = C.PHANTOMS.get(C.canon(ph[0], ph[1]))
        ev.ct_exposure_time_s = (et / 1000.0) if et is not None else None
    elif mod in ("XA", "RF"):
        if setting == "SC":
            ev.event_type = "fluoroscopy"
        elif setting == "GR":
            ev.event_type = "stationary"
    elif mod in ("DX", "CR", "MG", "PX", "IO"):
        ev.event_type = "stationary"
        # mammography / radiography header items, and one event per exposure (For Presentation and For
        # Processing copies share it): see dosereg.rdsr.mammo
        M.image_header(ctx, h, ev, doc.procedure_modality or mod)
        ev.irradiation_event_uid = M.exposure_event_uid(
            doc, ev, hdr_uid, acquisition_time_known=bool(h.ascii(T_ACQ_DATETIME) or h.ascii(T_ACQ_TIME)))
        extra["image_sop_instance_uid"] = doc.sop_instance_uid
    tft = h.number(T_TOTAL_FLUORO_TIME)
    if tft is not None:
        extra["total_time_of_fluoroscopy_s"] = tft
    doc.events.append(ev)
    if mod != "CT" and ev.dap_gy_cm2 is not None:
        doc.planes.append(PlaneTotals(plane="single", dap_total_gy_cm2=ev.dap_gy_cm2,
                                      fluoro_time_total_s=tft, derived=True))
        ctx.warn("plane totals derived from a single image header (one event per image; do not sum images "
                 "of the same irradiation event)")
    if dap is None and ev.ctdivol_mgy is None and ev.entrance_exposure_at_rp_mgy is None and ev.agd_mgy is None:
        ctx.warn("image header carries no dose attribute (no DAP (0018,115E), Entrance Dose, Organ Dose or CTDIvol)")


# ---------------------------------------------------------------------------
# MR headers
# ---------------------------------------------------------------------------
def _extract_mr(ctx: _Ctx, h: Header) -> None:
    doc = ctx.doc
    doc.source_kind = MR_HEADER
    doc.procedure_modality = "MR"
    mr = MRInfo()
    mr.field_strength_t = h.number(T_FIELD_STRENGTH)
    mr.sar_w_kg = h.number(T_SAR)
    if mr.sar_w_kg is not None:
        mr.sar_definition = "IEC_WHOLE_BODY"  # (0018,1316) is the whole-body SAR by definition
    mr.db_dt_t_s = h.number(T_DBDT)
    mr.b1rms_ut = h.number(T_B1RMS)
    mr.protocol = h.text(T_PROTOCOL) or h.text(T_SERIES_DESC)

    # Enhanced MR: MR Timing and Related Parameters (top level, shared or first per-frame group)
    scopes = [h]
    for fg in h.seq(T_SHARED_FG) + h.seq(T_PERFRAME_FG)[:1]:
        scopes.append(fg)
        scopes.extend(fg.seq(T_MR_TIMING_SEQ))
    sars: list[tuple[str | None, float]] = []
    modes: list[str] = []
    for sc in scopes:
        for it in sc.seq(T_SAR_SEQ):
            v = it.number(T_SAR_VALUE)
            if v is not None:
                sars.append((it.ascii(T_SAR_DEFINITION), v))
        for it in sc.seq(T_OPERATING_MODE_SEQ):
            t, m = it.ascii(T_OPERATING_MODE_TYPE), it.ascii(T_OPERATING_MODE)
            if t or m:
                s = f"{t or '?'}:{m or '?'}"
                if s not in modes:
                    modes.append(s)
        if mr.db_dt_t_s is None and (sc.ascii(T_GRADIENT_OUTPUT_TYPE) or "").upper() == "DB_DT":
            mr.db_dt_t_s = sc.number(T_GRADIENT_OUTPUT)
    if sars and mr.sar_w_kg is None:
        whole = [s for s in sars if (s[0] or "").upper() == "IEC_WHOLE_BODY"]
        chosen = whole[0] if whole else sars[0]
        mr.sar_definition, mr.sar_w_kg = chosen
    if modes:
        mr.operating_mode = "; ".join(modes)
    if all(v is None for v in (mr.sar_w_kg, mr.db_dt_t_s, mr.field_strength_t, mr.b1rms_ut)):
        ctx.warn("MR image header carries no SAR, dB/dt, B1rms or field strength")
    doc.mr = mr
