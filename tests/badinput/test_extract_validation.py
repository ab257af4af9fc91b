"""The extractor's plausibility checks (pure, no database): what quarantines, what only warns,
and that real reports (the shared corpus, the builder's realistic mixes) trip none of them."""
from __future__ import annotations

import datetime as dt
import random

import pytest

from dosereg.rdsr import ExtractionError, builder as B, extract_bytes

from . import objects as O


def reason(data: bytes) -> str:
    with pytest.raises(ExtractionError) as exc:
        extract_bytes(data)
    return exc.value.reason


@pytest.mark.parametrize("factory", [O.absurd_dose, O.negative_dose, O.absurd_ctdi, O.negative_dlp, O.no_content,
                                     O.no_dose_items, O.deep_nesting, O.truncated])
def test_bad_sr_trees_raise_a_specific_reason(factory):
    data, expected = factory()
    assert expected in reason(data)


def test_absurd_reason_names_value_unit_and_limit():
    data, _ = O.absurd_dose()
    assert reason(data) == ("implausible dose value: Dose Area Product 1E30 Gy.m2 (= 1e+34 Gy.cm2) exceeds the "
                            "plausibility limit of 100000 Gy.cm2")


@pytest.mark.parametrize("backend", ["fast", "pydicom"])
def test_both_backends_agree_on_implausible_values(backend):
    data, expected = O.negative_dose()
    with pytest.raises(ExtractionError, match="is negative"):
        extract_bytes(data, backend=backend)


def test_plane_total_in_the_wrong_unit_by_orders_of_magnitude_is_refused():
    """A DAP total of 50 Gy.cm2 labelled Gy.m2 by a broken encoder is 500,000 Gy.cm2: refused."""
    spec = B.ProjectionRDSRSpec(events=[B.ProjectionEventSpec(dap_gy_cm2=50.0)],
                                planes=[B.PlaneTotalsSpec(dap_total_gy_cm2=50.0 * 1e4)])
    assert "Dose Area Product Total" in reason(B.to_bytes(B.build_projection_rdsr(spec)))


def test_zero_doses_are_fine():
    spec = B.ProjectionRDSRSpec(events=[B.ProjectionEventSpec(dap_gy_cm2=0.0, dose_rp_gy=0.0)])
    doc = extract_bytes(B.to_bytes(B.build_projection_rdsr(spec)))
    assert doc.events[0].dap_gy_cm2 == 0.0 and not [w for w in doc.warnings if "implausible" in w]


def test_negative_technique_factors_are_dropped_with_a_warning():
    spec = B.ProjectionRDSRSpec(events=[B.ProjectionEventSpec(dap_gy_cm2=1.0, kvp=-70.0, irradiation_duration_s=-3.0,
                                                              positioner_primary_angle_deg=-30.0)])
    doc = extract_bytes(B.to_bytes(B.build_projection_rdsr(spec)))
    ev = doc.events[0]
    assert ev.kvp is None and ev.irradiation_duration_s is None
    assert ev.positioner_primary_angle_deg == -30.0  # angles may be negative
    assert any(w.startswith("KVP: negative value -70 kV is not plausible") for w in doc.warnings), doc.warnings


def test_image_header_doses_are_checked_too():
    ds = B.build_dx_image(B.DXImageSpec(dap_dgy_cm2=-8.5))
    assert reason(B.to_bytes(ds)) == ("implausible dose value: Image and Fluoroscopy Area Dose Product (0018,115E) "
                                      "-8.5 dGy.cm2 is negative")
    ds = B.build_dx_image(B.DXImageSpec(entrance_dose_mgy=3e9))
    assert "Entrance Dose in mGy (0040,8302)" in reason(B.to_bytes(ds))


def test_future_and_prehistoric_dates_are_stored_null_and_flagged():
    """Issue 18: a date out of [1895, now + 1 day] is not an examination date (a wrong clock or a placeholder):
    null, with the reason as a warning and a flag (it used to be kept as sent)."""
    year = dt.date.today().year + 3
    data, warning = O.future_dates()
    doc = extract_bytes(data)
    assert doc.study_datetime is None
    assert any(warning in w and w.endswith("stored as null") for w in doc.warnings)
    assert any(warning in f for f in doc.flags)
    assert any("irradiation event datetimes are in the future" in w for w in doc.flags)
    assert all(e.datetime is None for e in doc.events)
    ds = O.projection(birth_date=dt.date(year, 1, 1))
    doc = extract_bytes(B.to_bytes(ds))
    assert any(w.startswith(f"implausible date: Patient's Birth Date {year}-01-01 is in the future") for w in doc.warnings)
    assert doc.patient.birth_date is None
    ds = O.projection(study_datetime=dt.datetime(1890, 1, 1))
    doc = extract_bytes(B.to_bytes(ds))
    assert any("Study Date/Time 1890-01-01T00:00:00 is before 1895" in w for w in doc.warnings)
    assert doc.study_datetime is None


def test_today_is_not_the_future():
    now = dt.datetime.now().replace(microsecond=0)
    doc = extract_bytes(B.to_bytes(O.projection(study_datetime=now)))
    assert not [w for w in doc.warnings if "implausible" in w]


def test_wrong_value_types_warn_and_null():
    data, warning = O.wrong_value_types()
    doc = extract_bytes(data)
    assert warning in doc.warnings
    assert [e.dap_gy_cm2 for e in doc.events][0] is None


def test_by_reference_cycles_do_not_loop():
    data, n = O.by_reference_cycle()
    assert len(extract_bytes(data).events) == n


def test_missing_sop_class_and_garbage():
    data = O.good()
    meta = data[:O._meta_end(data)]
    assert len(extract_bytes(meta + _without_sop_class(data)).events) == 3  # the File Meta still names the class
    assert reason(_without_sop_class(O.good())).startswith("missing SOP Class UID (0008,0016)")
    assert reason(b"") == "empty input: 0 bytes, not a DICOM file"
    assert reason(b"hello world" * 20).startswith("not a DICOM file")
    data, _, expected = O.garbage_with_preamble(seed=11)
    assert reason(data).startswith(expected)


def _without_sop_class(data: bytes) -> bytes:
    """A bare data set (no File Meta) without (0008,0016)."""
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.SOPClassUID
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=False, little_endian=True, enforce_file_format=False)
    out = buf.getvalue()
    return out[O._meta_end(out):] if out[128:132] == b"DICM" else out


def test_corpus_and_builder_mixes_trip_no_plausibility_check(corpus_files):
    for f in corpus_files:
        try:
            doc = extract_bytes(f.read_bytes())
        except ExtractionError as exc:
            assert "implausible" not in exc.reason, (f.name, exc.reason)
            continue
        assert not [w for w in doc.warnings if "implausible" in w or "negative value" in w], (f.name, doc.warnings)
    rng = random.Random(2024)
    for i in range(150):
        if i % 3 == 0:
            ds = B.build_ct_rdsr(B.random_ct_spec(rng))
        else:
            ds = B.build_projection_rdsr(B.random_projection_spec(rng))
        doc = extract_bytes(B.to_bytes(ds))
        assert not [w for w in doc.warnings if "implausible" in w or "negative value" in w], doc.warnings
