"""Extraction fixes found against another registry's published expectations (issue 16): per-pulse technique
values, patient age from birth date, reports whose planes disagree, empty reports. Plain pytest (no Django):
builder-made RDSRs with known values go through the real parser."""
from __future__ import annotations

import datetime as dt

import pytest

from dosereg.rdsr import builder as b
from dosereg.rdsr.extract import extract_bytes

T0 = dt.datetime(2025, 3, 4, 10, 0, 0)


def _extract(spec):
    return extract_bytes(b.to_bytes(b.build_projection_rdsr(spec)))


def test_per_pulse_values_are_summarised_as_mean_min_max_with_the_reported_list():
    kvs = [0.0, 60.0, 60.0, 62.0, 61.5, 56.5]
    mas = [0.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    widths = [8.0, 8.0, 10.0]
    spec = b.ProjectionRDSRSpec(study_datetime=T0, events=[
        b.ProjectionEventSpec(dap_gy_cm2=1.2, dose_rp_gy=0.01, event_type="stationary", kvp_per_pulse=kvs,
                              tube_current_ma_per_pulse=mas, pulse_width_ms_per_pulse=widths),
        b.ProjectionEventSpec(dap_gy_cm2=0.4, dose_rp_gy=0.002, kvp=70.0, tube_current_ma=12.0, pulse_width_ms=4.0),
    ])
    doc = _extract(spec)
    multi, single = doc.events
    assert multi.kvp == pytest.approx(sum(kvs) / len(kvs))          # 50.0 kV, not the first value (0 kV)
    assert multi.tube_current_ma == pytest.approx(50.0)
    assert multi.pulse_width_ms == pytest.approx(26.0 / 3)
    pp = multi.extra["per_pulse"]
    assert pp["kvp"] == {"mean": pytest.approx(50.0), "min": 0.0, "max": 62.0, "count": 6, "values": kvs}
    assert pp["tube_current_ma"]["count"] == 6 and pp["tube_current_ma"]["min"] == 0.0
    assert pp["pulse_width_ms"]["max"] == 10.0
    # one value per event: plain value, no per-pulse summary
    assert (single.kvp, single.tube_current_ma, single.pulse_width_ms) == (70.0, 12.0, 4.0)
    assert "per_pulse" not in single.extra


def test_patient_age_from_birth_date_and_study_date_when_age_is_absent():
    spec = b.ProjectionRDSRSpec(study_datetime=dt.datetime(2020, 6, 1, 9, 0), birth_date=dt.date(1971, 1, 5),
                                events=[b.ProjectionEventSpec(dap_gy_cm2=1.0, dose_rp_gy=0.01)])
    ds = b.build_projection_rdsr(spec)
    del ds.PatientAge
    doc = extract_bytes(b.to_bytes(ds))
    assert doc.patient.age_years == pytest.approx(49.4, abs=0.05)
    # an age that is sent wins over the birth date
    ds.PatientAge = "048Y"
    assert extract_bytes(b.to_bytes(ds)).patient.age_years == 48.0


def test_birth_date_after_the_study_derives_no_age_and_warns():
    spec = b.ProjectionRDSRSpec(study_datetime=dt.datetime(2020, 6, 1, 9, 0), birth_date=dt.date(2021, 1, 5),
                                events=[b.ProjectionEventSpec(dap_gy_cm2=1.0, dose_rp_gy=0.01)])
    ds = b.build_projection_rdsr(spec)
    del ds.PatientAge
    doc = extract_bytes(b.to_bytes(ds))
    assert doc.patient.age_years is None
    assert any("Birth Date" in w and "not plausible" in w for w in doc.warnings)


def test_planes_a_and_b_in_accumulated_data_with_single_plane_events_are_flagged_not_double_counted():
    events = [b.ProjectionEventSpec(dap_gy_cm2=2.0, dose_rp_gy=0.1, plane="single") for _ in range(3)]
    spec = b.ProjectionRDSRSpec(study_datetime=T0, events=events, planes=[
        b.PlaneTotalsSpec(plane="A", dap_total_gy_cm2=4.0, dose_rp_total_gy=0.2),
        b.PlaneTotalsSpec(plane="B", dap_total_gy_cm2=2.0, dose_rp_total_gy=0.1),
    ])
    doc = _extract(spec)
    assert sorted(p.plane for p in doc.planes) == ["A", "B"]          # no derived third ("single") total
    assert sum(p.dap_total_gy_cm2 for p in doc.planes) == pytest.approx(6.0)
    assert any(w.startswith("inconsistent planes") for w in doc.warnings)


def test_consistent_single_plane_report_derives_nothing_and_raises_no_plane_warning():
    spec = b.ProjectionRDSRSpec(study_datetime=T0, events=[b.ProjectionEventSpec(dap_gy_cm2=2.0, dose_rp_gy=0.1)])
    doc = _extract(spec)
    assert [p.plane for p in doc.planes] == ["single"]
    assert not any("inconsistent planes" in w for w in doc.warnings)


def test_empty_xray_dose_sr_is_recorded_with_a_warning():
    spec = b.ProjectionRDSRSpec(study_datetime=T0, events=[], planes=[])
    doc = _extract(spec)
    assert doc.events == [] and all(p.dap_total_gy_cm2 is None for p in doc.planes)
    assert any(w.startswith("empty report") for w in doc.warnings)
    full = _extract(b.ProjectionRDSRSpec(study_datetime=T0, events=[b.ProjectionEventSpec(dap_gy_cm2=1.0)]))
    assert not any(w.startswith("empty report") for w in full.warnings)


def test_inspect_lists_every_event_field_the_parser_read():
    from dosereg.rdsr.inspect import inspect_dict

    spec = b.ProjectionRDSRSpec(study_datetime=T0, events=[b.ProjectionEventSpec(
        dap_gy_cm2=1.0, dose_rp_gy=0.01, kvp=80.0, tube_current_ma=12.5, pulse_width_ms=6.0, pulse_rate=7.5,
        irradiation_duration_s=10.0, positioner_primary_angle_deg=30.0, positioner_secondary_angle_deg=-5.0,
        distance_source_to_detector_mm=1100.0, exposure_index=250.0, deviation_index=0.4)])
    ev = inspect_dict(_extract(spec))["events"][0]
    assert ev["tube_current_ma"] == 12.5 and ev["pulse_width_ms"] == 6.0 and ev["number_of_pulses"] == 75.0
    assert ev["positioner_primary_angle_deg"] == 30.0 and ev["positioner_secondary_angle_deg"] == -5.0
    assert ev["distance_source_to_detector_mm"] == 1100.0
    assert ev["exposure_index"] == 250.0 and ev["deviation_index"] == 0.4
