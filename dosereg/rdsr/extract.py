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
import re
from datetime import (
    date,
    datetime,
    time,
    timezone,
)
from pathlib import Path
from typing import Any

from . import codes as C
from . import nm as NM
from .reader import MAX_DEPTH, Code, Node, Parsed, ReaderError, TextDecoder, build_content_tree, read
from .records import (
    DOSE_SUMMARY,
    RDSR,
    DoseDocument,
    Participant,
)

from .extract_context import (  # noqa: F401 (some re-exported: mammo, nm and the tests read them here)
    DOSE_SR_CLASSES,
    EARLIEST_PLAUSIBLE,
    ENHANCED_XRAY_DOSE_SR,
    ExtractionError,
    FUTURE_SLACK,
    GENERIC_SR_CLASSES,
    Header,
    IMAGE_CLASSES,
    MR_CLASSES,
    NM_SR_CLASSES,
    NotADoseObject,
    SOP_CLASSES,
    T_ACCESSION,
    T_AGE,
    T_BIRTH_DATE,
    T_CHARSET,
    T_CONTENT_DATE,
    T_CONTENT_TIME,
    T_DEPARTMENT,
    T_INSTITUTION,
    T_ISSUER,
    T_MANUFACTURER,
    T_MEDIA_SOP_CLASS,
    T_MEDIA_SOP_INSTANCE,
    T_MODALITY,
    T_MODEL,
    T_OPERATORS,
    T_PATIENT_ID,
    T_PATIENT_NAME,
    T_PERFORMING_PHYSICIAN,
    T_PREGNANCY,
    T_SERIAL,
    T_SERIES_UID,
    T_SEX,
    T_SIZE,
    T_SOFTWARE,
    T_SOP_CLASS,
    T_SOP_INSTANCE,
    T_STATION,
    T_STUDY_DATE,
    T_STUDY_DESC,
    T_STUDY_TIME,
    T_STUDY_UID,
    T_TZ_OFFSET,
    T_WEIGHT,
    _Ctx,
    _PREGNANCY,
    _add_participant,
    _code_str,
    _device_fallbacks,
    _person,
    _text_value,
    check_dose,
    parse_age,
    parse_date,
    parse_tz,
)
from .extract_projection import (  # noqa: F401 (some re-exported: mammo, nm and the tests read them here)
    _extract_enhanced,
    _extract_projection,
    _extract_radsum,
    _projection_modality,
    _siemens_position,
    _vendor_orientation,
)
from .extract_ct import (  # noqa: F401 (some re-exported: mammo, nm and the tests read them here)
    _extract_ct,
)
from .extract_headers import (  # noqa: F401 (some re-exported: mammo, nm and the tests read them here)
    _extract_image,
    _extract_mr,
)

__all__ = ["ExtractionError", "NotADoseObject", "extract_bytes", "extract_file", "SOP_CLASSES"]


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
                 f"(first {first.datetime.isoformat() if first.datetime else '?'}; device clock or placeholder?); stored as null")
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
    if root_key is not None and root.concept is not None and root_key != C.XRAY_DOSE_REPORT and route != "10040":
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


