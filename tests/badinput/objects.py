"""Bad (and good) DICOM objects for the bad-input suite, made with the project's RDSR builder.

Each factory returns Part-10 bytes. SR trees are mutated through pydicom (the builder's
raw ContentSequence is parsed lazily on first access) or, for shapes pydicom would not
write comfortably (200-deep nesting, 100k items), encoded with the builder's own SR encoder.
"""
from __future__ import annotations

import datetime as dt
import io
import random
import struct

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    PYDICOM_IMPLEMENTATION_UID,
    generate_uid,
)

from dosereg.rdsr import builder as B

RDSR_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _uid(tag: str) -> str:
    return generate_uid(prefix="1.2.826.0.1.3680043.10.1077.")


def projection(n_events: int = 3, *, patient_id: str = "BADIN0001", **overrides) -> Dataset:
    """A small, valid TID 10001 RDSR (3 fluoroscopy events)."""
    events = [B.ProjectionEventSpec(dap_gy_cm2=0.5 + i % 3, dose_rp_gy=0.002 + (i % 3) / 1000, kvp=75.0, tube_current_ma=5.0,
                                    irradiation_duration_s=10.0 + i) for i in range(n_events)]
    fields = dict(patient_id=patient_id, patient_name="Bad^Input", study_datetime=dt.datetime(2025, 3, 2, 9, 30),
                  sop_instance_uid=_uid("sop"), study_instance_uid=_uid("study"))
    fields.update(overrides)
    return B.build_projection_rdsr(B.ProjectionRDSRSpec(events=events, **fields))


def good(patient_id: str = "GOOD0001", n_events: int = 3, **overrides) -> bytes:
    return B.to_bytes(projection(n_events, patient_id=patient_id, **overrides))


def ct(**event_overrides) -> Dataset:
    ev = dict(ctdivol_mgy=12.0, dlp_mgy_cm=450.0, scanning_length_mm=350.0)
    ev.update(event_overrides)
    return B.build_ct_rdsr(B.CTRDSRSpec(events=[B.CTEventSpec(**ev)], patient_id="BADINCT1", dlp_total_mgy_cm=450.0,
                                        sop_instance_uid=_uid("sop"), study_instance_uid=_uid("study")))


def sop_uid(data: bytes) -> str:
    import pydicom

    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True,
                               specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


def _items(ds: Dataset, code_value: str) -> list[Dataset]:
    """Content items (any depth) whose concept name code value is ``code_value``."""
    out = []

    def walk(seq):
        for it in seq:
            cn = it.get("ConceptNameCodeSequence")
            if cn and cn[0].CodeValue == code_value:
                out.append(it)
            if "ContentSequence" in it:
                walk(it.ContentSequence)

    walk(ds.ContentSequence)
    return out


def _set_numeric(ds: Dataset, code_value: str, value: str, index: int = 0) -> Dataset:
    from pydicom.dataelem import RawDataElement

    item = _items(ds, code_value)[index]
    raw = value.encode("ascii")
    raw += b" " * (len(raw) & 1)
    # raw: pydicom would refuse to hold a DS that is not a number
    item.MeasuredValueSequence[0][0x0040A30A] = RawDataElement(0x0040A30A, "DS", len(raw), raw, 0, False, True)
    return ds


DAP = "122130"            # Dose Area Product (event)
DOSE_RP = "113738"        # Dose (RP) (event)
DAP_TOTAL = "113722"


# --- malformed SR trees -------------------------------------------------------------------
def absurd_dose() -> tuple[bytes, str]:
    ds = projection()
    _set_numeric(ds, DAP, "1E30")  # Gy.m2: 1e34 Gy.cm2
    return B.to_bytes(ds), "implausible dose value: Dose Area Product 1E30 Gy.m2"


def negative_dose() -> tuple[bytes, str]:
    ds = projection()
    _set_numeric(ds, DOSE_RP, "-0.25")
    return B.to_bytes(ds), "implausible dose value: Dose (RP) -0.25 Gy is negative"


def absurd_ctdi() -> tuple[bytes, str]:
    return B.to_bytes(ct(ctdivol_mgy=5e9)), "implausible dose value: Mean CTDIvol"


def negative_dlp() -> tuple[bytes, str]:
    return B.to_bytes(ct(dlp_mgy_cm=-450.0)), "implausible dose value: DLP -450 mGy.cm is negative"


def no_content() -> tuple[bytes, str]:
    """Missing required items: the SR document has no content tree at all."""
    ds = projection()
    del ds.ContentSequence
    del ds.ContentTemplateSequence
    return B.to_bytes(ds), "X-Ray Radiation Dose SR without radiation dose content"


def no_dose_items() -> tuple[bytes, str]:
    """Missing required items: observer context only, no Accumulated X-Ray Dose, no events, no template."""
    ds = projection()
    ds.ContentSequence = Sequence([it for it in ds.ContentSequence
                                   if it.ConceptNameCodeSequence[0].CodeValue not in ("113702", "113706", "121058")])
    del ds.ContentTemplateSequence
    return B.to_bytes(ds), "without radiation dose content: root concept (113701, DCM, 'X-Ray Radiation Dose Report')"


def wrong_value_types() -> tuple[bytes, str]:
    """DAP as text, a non-numeric Dose (RP): ingested, the bad values null with specific warnings."""
    ds = projection()
    item = _items(ds, DAP)[0]
    item.ValueType = "TEXT"
    item.TextValue = "lots"
    del item.MeasuredValueSequence
    _set_numeric(ds, DOSE_RP, "abc", index=1)
    return B.to_bytes(ds), "Dose Area Product: value type TEXT where NUM is expected; ignored"


def future_dates() -> tuple[bytes, str]:
    year = dt.date.today().year + 5
    ds = projection(study_datetime=dt.datetime(year, 1, 1, 10, 0))
    return B.to_bytes(ds), f"implausible date: Study Date/Time {year}-01-01T10:00:00 is in the future"


def _deep_container(depth: int) -> bytes:
    inner = B._num(B.CONTAINS, B.C_DAP_TOTAL, 1.0, B.U_GY_M2)
    for _ in range(depth):
        inner = B._container(B.CONTAINS, B.C_ACCUMULATED, [inner])
    return inner


def deep_nesting(depth: int = 200) -> tuple[bytes, str]:
    ds = projection()
    extra = _deep_container(depth)
    raw = ds.get_item(B.TAG_CONTENT_SEQUENCE)  # still the builder's raw (encoded) element
    ds[B.TAG_CONTENT_SEQUENCE] = B._raw_sq(B.TAG_CONTENT_SEQUENCE, bytes(raw.value) + extra)
    return B.to_bytes(ds), "nesting deeper than 64 levels"


def many_items(n: int = 100_000) -> tuple[bytes, int]:
    """A valid RDSR plus ``n`` junk TEXT items under the root: ingested, only the real events counted."""
    ds = projection()
    raw = ds.get_item(B.TAG_CONTENT_SEQUENCE)
    junk = B._text(B.CONTAINS, B.C_COMMENT, "x")
    ds[B.TAG_CONTENT_SEQUENCE] = B._raw_sq(B.TAG_CONTENT_SEQUENCE, bytes(raw.value) + junk * n)
    return B.to_bytes(ds), 3


def by_reference_cycle() -> tuple[bytes, int]:
    """Items referring by reference (ReferencedContentItemIdentifier) to the root and to themselves: no loop."""
    ds = projection()
    events = _items(ds, "113706")
    for ev in events:
        ref = Dataset()
        ref.RelationshipType = "INFERRED FROM"
        ref.ReferencedContentItemIdentifier = [1]  # the document root
        me = Dataset()
        me.RelationshipType = "INFERRED FROM"
        me.ReferencedContentItemIdentifier = [1, 5, 1]
        ev.ContentSequence.extend([ref, me])
    root_ref = Dataset()
    root_ref.RelationshipType = "CONTAINS"
    root_ref.ReferencedContentItemIdentifier = [1]
    ds.ContentSequence.append(root_ref)
    return B.to_bytes(ds), 3


# --- not a dose object / not DICOM ---------------------------------------------------------
def truncated(fraction: float = 0.6) -> tuple[bytes, str]:
    data = good("TRUNC0001", n_events=20)
    return data[: int(len(data) * fraction)], "truncated DICOM data"


def _meta_bytes(sop_class: str, sop_instance: str, ts: str = ExplicitVRLittleEndian) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data[:_meta_end(data)]  # no (possibly deflated) empty data set after it


def garbage_with_preamble(seed: int = 7, size: int = 4096) -> tuple[bytes, str, str]:
    """128-byte preamble + DICM + a valid File Meta for an RDSR, then random bytes."""
    uid = _uid("garbage")
    rng = random.Random(seed)
    body = bytes(rng.getrandbits(8) for _ in range(size))
    return _meta_bytes(RDSR_CLASS, uid) + body, uid, "malformed DICOM data"


def secondary_capture_as(sop_class_in_meta: str = COMPREHENSIVE_SR) -> tuple[bytes, str, str]:
    """A Secondary Capture image whose File Meta claims an accepted class (so a sender offers that context)."""
    uid = _uid("sc")
    ds = Dataset()
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = uid
    ds.StudyInstanceUID = _uid("study")
    ds.SeriesInstanceUID = _uid("series")
    ds.PatientID = "SC0001"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)  # (this sets the File Meta's class from the data set)
    body = buf.getvalue()[_meta_end(buf.getvalue()):]
    return (_meta_bytes(sop_class_in_meta, uid) + body, uid,
            f"unsupported SOP class {SECONDARY_CAPTURE} (Secondary Capture Image Storage)")


def secondary_capture() -> Dataset:
    data, uid, _ = secondary_capture_as(SECONDARY_CAPTURE)
    import pydicom

    return pydicom.dcmread(io.BytesIO(data))


def fake_deflated() -> tuple[bytes, str, str]:
    """File Meta says Deflated Explicit VR LE, the data set is not deflated."""
    ds = projection(patient_id="DEFL0001")
    plain = B.to_bytes(ds)
    meta_end = _meta_end(plain)
    data = _meta_bytes(RDSR_CLASS, str(ds.SOPInstanceUID), DeflatedExplicitVRLittleEndian) + b"\xff\xfe" + plain[meta_end:]
    return data, str(ds.SOPInstanceUID), "deflated data set cannot be inflated"


def _meta_end(data: bytes) -> int:
    # (0002,0000) UL group length right after the preamble: 132 + 12 + its value
    assert data[128:132] == b"DICM" and data[132:136] == b"\x02\x00\x00\x00"
    return 132 + 12 + struct.unpack_from("<I", data, 140)[0]


def oversize(n_bytes: int) -> bytes:
    ds = projection(patient_id="BIG00001")
    ds.add_new(0x00290010, "LO", "DOSEREG TEST")
    ds.add_new(0x00291010, "OB", b"\x00" * n_bytes)
    return B.to_bytes(ds)
