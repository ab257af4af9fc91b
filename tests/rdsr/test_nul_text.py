"""Text values with an embedded NUL (0x00; invalid in DICOM text, refused by PostgreSQL) are cleaned from the whole
record with a warning, wherever they sit: header, event protocol, comment, private-looking free text. A report
without any keeps its values exactly (the reader tells the extractor, which then skips the walk)."""
from __future__ import annotations

import dataclasses

from dosereg.rdsr import builder as B
from dosereg.rdsr.extract import extract_bytes
from dosereg.rdsr.reader import TextDecoder

NUL_WARNING = "text values contained NUL (0x00) characters"


def _strings(obj, out):
    if isinstance(obj, str):
        out.append(obj)
    elif isinstance(obj, dict):
        for k, v in obj.items():
            _strings(k, out)
            _strings(v, out)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            _strings(v, out)
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            _strings(getattr(obj, f.name), out)
    return out


def _spec(**common):
    ev = B.ProjectionEventSpec(dap_gy_cm2=1.5, dose_rp_gy=0.02, protocol="Card\x00iac", comment="left\x00side")
    return B.ProjectionRDSRSpec(events=[ev], **common)


def test_embedded_nuls_are_removed_everywhere_with_a_warning():
    ds = B.build_projection_rdsr(_spec(station_name="ROOM\x007", study_description="Coro\x00nary"))
    doc = extract_bytes(B.to_bytes(ds))
    strings = _strings(doc, [])
    assert strings and not any("\x00" in s for s in strings)
    assert doc.events[0].protocol == "Cardiac"
    assert doc.device.station_name == "ROOM7"
    assert doc.study_description == "Coronary"
    assert any(NUL_WARNING in w for w in doc.warnings)


def test_a_clean_report_has_no_warning_and_the_same_values():
    doc = extract_bytes(B.to_bytes(B.build_projection_rdsr(B.ProjectionRDSRSpec(events=[
        B.ProjectionEventSpec(dap_gy_cm2=1.5, dose_rp_gy=0.02, protocol="Cardiac", comment="left side")]))))
    assert doc.events[0].protocol == "Cardiac"
    assert not any(NUL_WARNING in w for w in doc.warnings)


def test_decoder_reports_an_inner_nul_but_not_padding():
    dec = TextDecoder(None)
    assert dec.text(b"ABC\x00") == "ABC" and dec.ascii(b"1.2.3\x00") == "1.2.3"
    assert not dec.nul_seen
    dec.text(b"A\x00B ")
    assert dec.nul_seen
