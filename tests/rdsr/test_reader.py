"""Both front-ends (fast byte reader, pydicom) must give identical DoseDocuments."""
from __future__ import annotations

import io
import struct

import pytest

from dosereg.rdsr import ExtractionError, extract_bytes, extract_file
from dosereg.rdsr import reader
from tests.conftest import corpus_path, require

CORPUS = corpus_path()
require(CORPUS.is_dir(), f"the dose corpus ({CORPUS})", module=True)  # CI never skips silently

FILES = sorted(p.name for p in CORPUS.glob("*.dcm"))


@pytest.mark.parametrize("name", FILES)
def test_fast_and_pydicom_front_ends_agree(name):
    data = (CORPUS / name).read_bytes()
    fast = extract_bytes(data, backend="fast")
    slow = extract_bytes(data, backend="pydicom")
    assert fast == slow
    assert fast.to_dict() == slow.to_dict()


def test_fast_reader_is_used_for_corpus():
    for name in FILES:
        parsed = reader.read((CORPUS / name).read_bytes())
        assert parsed.backend == "fast", name


def _resave(name: str, ts: str) -> bytes:
    import pydicom
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import UID

    ds = pydicom.dcmread(CORPUS / name)
    ds.file_meta.TransferSyntaxUID = ts
    uid = UID(ts)
    buf = io.BytesIO()
    dcmwrite(buf, ds, implicit_vr=uid.is_implicit_VR, little_endian=uid.is_little_endian,
             force_encoding=True)
    return buf.getvalue()


@pytest.mark.parametrize("name", ["philips_allura-xper_RF.dcm", "siemens_somatom-confidence_CT_multi-3.dcm",
                                  "ge_optima-xr220_DX_mobile_image-header.dcm",
                                  "siemens_axiom-artis-zee_RF.dcm"])
def test_transfer_syntaxes_give_same_document(name):
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian

    original = extract_file(CORPUS / name)

    implicit = _resave(name, ImplicitVRLittleEndian)
    parsed = reader.read(implicit)
    assert parsed.transfer_syntax == ImplicitVRLittleEndian and parsed.backend == "fast"
    assert extract_bytes(implicit) == original
    assert extract_bytes(implicit, backend="pydicom") == original

    deflated = _resave(name, DeflatedExplicitVRLittleEndian)
    assert reader.read(deflated).backend == "fast"
    assert extract_bytes(deflated) == original
    assert extract_bytes(deflated, backend="pydicom") == original

    big = _resave(name, ExplicitVRBigEndian)
    parsed = reader.read(big)
    assert parsed.backend == "pydicom" and parsed.little_endian is False
    assert extract_bytes(big) == original


def test_image_header_binary_values_big_endian():
    """CTDIvol (FD) and Pregnancy Status (US) decode the same in both byte orders."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRBigEndian, ExplicitVRLittleEndian

    def make(ts):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ts
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4.5"
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = "1.2.3.4.5"
        ds.StudyInstanceUID = "1.2.3"
        ds.Modality = "CT"
        ds.KVP = "120"
        ds.CTDIvol = 12.5
        ph = Dataset()
        ph.CodeValue, ph.CodingSchemeDesignator, ph.CodeMeaning = "113691", "DCM", "IEC Body Dosimetry Phantom"
        ds.CTDIPhantomTypeCodeSequence = [ph]
        ds.PregnancyStatus = 2
        ds.ExposureTime = "500"
        buf = io.BytesIO()
        ds.save_as(buf, implicit_vr=False, little_endian=(ts == ExplicitVRLittleEndian), enforce_file_format=True)
        return buf.getvalue()

    le = extract_bytes(make(ExplicitVRLittleEndian))
    be = extract_bytes(make(ExplicitVRBigEndian))
    assert le == be
    (e,) = le.events
    assert le.source_kind == "image_header" and e.irradiation_event_uid == "1.2.3.4.5"
    assert e.ctdivol_mgy == pytest.approx(12.5) and e.ctdiw_phantom == "body_32cm" and e.kvp == 120
    assert e.ct_exposure_time_s == pytest.approx(0.5)
    assert le.patient.pregnancy_status == "possibly_pregnant"
    assert pydicom  # imported for side effects only


def test_mr_headers():
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import EnhancedMRImageStorage, ExplicitVRLittleEndian, MRImageStorage

    def save(ds):
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()

    def base(cls, uid):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = cls
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = cls, uid, "MR"
        ds.StudyInstanceUID = "1.2.3"
        ds.MagneticFieldStrength = "3"
        ds.ProtocolName = "t1_mprage"
        return ds

    ds = base(MRImageStorage, "1.2.3.1")
    ds.SAR = "1.25"
    ds.dBdt = "42.5"
    ds.B1rms = 2.5
    d = extract_bytes(save(ds))
    assert d.source_kind == "mr_header" and d.events == [] and d.planes == []
    assert (d.mr.sar_w_kg, d.mr.db_dt_t_s, d.mr.field_strength_t, d.mr.b1rms_ut) == (1.25, 42.5, 3.0, 2.5)
    assert d.mr.protocol == "t1_mprage"
    assert extract_bytes(save(ds), backend="pydicom") == d

    ds = base(EnhancedMRImageStorage, "1.2.3.2")
    timing = Dataset()
    sar_head, sar_wb = Dataset(), Dataset()
    sar_head.SpecificAbsorptionRateDefinition, sar_head.SpecificAbsorptionRateValue = "IEC_HEAD", 3.1
    sar_wb.SpecificAbsorptionRateDefinition, sar_wb.SpecificAbsorptionRateValue = "IEC_WHOLE_BODY", 0.9
    timing.SpecificAbsorptionRateSequence = [sar_head, sar_wb]
    om = Dataset()
    om.OperatingModeType, om.OperatingMode = "RF", "IEC_FIRST_LEVEL"
    timing.OperatingModeSequence = [om]
    timing.GradientOutputType, timing.GradientOutput = "DB_DT", 55.0
    shared = Dataset()
    shared.MRTimingAndRelatedParametersSequence = [timing]
    ds.SharedFunctionalGroupsSequence = [shared]
    d = extract_bytes(save(ds))
    assert d.mr.sar_w_kg == pytest.approx(0.9) and d.mr.sar_definition == "IEC_WHOLE_BODY"
    assert d.mr.db_dt_t_s == pytest.approx(55.0) and d.mr.operating_mode == "RF:IEC_FIRST_LEVEL"
    assert d.mr.field_strength_t == 3.0
    assert extract_bytes(save(ds), backend="pydicom") == d


def _elem_explicit(group, elem, vr, value: bytes) -> bytes:
    if vr in (b"SQ", b"UN", b"OB", b"UT"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def test_nesting_depth_guard():
    # 200 nested undefined-length ContentSequences
    inner = b""
    for _ in range(200):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF) + inner + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
        inner = (struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF) + item
                 + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    ds = (_elem_explicit(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.88.67\x00")
          + _elem_explicit(0x0008, 0x0018, b"UI", b"1.2.3.4")
          + inner)
    with pytest.raises(ExtractionError) as ei:
        extract_bytes(bytes(128) + b"DICM" + _elem_explicit(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\x00") + ds)
    assert "deeper than 64" in ei.value.reason


def test_bare_dataset_without_preamble():
    data = (CORPUS / "canon_cxdi_DX.dcm").read_bytes()
    # skip preamble + meta: find the end of group 0002
    parsed_meta, pos = reader._read_meta(data)
    assert parsed_meta
    d = extract_bytes(data[pos:])
    assert d == extract_file(CORPUS / "canon_cxdi_DX.dcm")


def test_text_decoder():
    dec = reader.TextDecoder(b"ISO_IR 100")
    assert dec.text(b"M\xfcller ") == "Müller"
    assert dec.text("testæøå".encode("utf-8")) == "testæøå"  # UTF-8 in a Latin-1 file
    assert reader.TextDecoder(b"ISO_IR 192").text("آدم".encode()) == "آدم"
    jp = reader.TextDecoder(b"\\ISO 2022 IR 87")
    raw = b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"
    assert jp.text(raw, pn=True) == "Yamada^Tarou=山田^太郎"


def test_declared_implicit_but_explicit_data():
    """Quirk: the meta header says Implicit VR LE but the data set is Explicit VR LE."""
    data = (CORPUS / "canon_cxdi_DX.dcm").read_bytes()
    explicit_ts = b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\x00"
    assert explicit_ts in data
    lying = data.replace(explicit_ts, b"\x02\x00\x10\x00UI\x12\x001.2.840.10008.1.2\x00")
    d = extract_bytes(lying)
    original = extract_file(CORPUS / "canon_cxdi_DX.dcm")
    assert d.events == original.events and d.planes == original.planes
    assert any("declares Implicit VR" in w for w in d.warnings)
