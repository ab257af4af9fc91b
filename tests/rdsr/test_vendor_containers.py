"""Vendor containers (issues 15 and 16): the Siemens patient position in a private study-level comment and the
Philips private shutter positions (collimation) are read into the standard fields: patient orientation
(event extra: table relationship, orientation, modifier) and collimated field area."""
from __future__ import annotations

import pytest

from dosereg.rdsr import builder as B
from dosereg.rdsr import extract_bytes, extract_file
from tests.conftest import require


def _corpus(corpus_dir, name):
    path = corpus_dir / name
    require(path.exists(), str(path))
    return extract_file(path)


def test_siemens_artis_zee_private_comment_gives_head_first_recumbent_supine(corpus_dir):
    doc = _corpus(corpus_dir, "siemens_axiom-artis-zee_RF.dcm")
    assert len(doc.events) == 8
    for ev in doc.events:
        assert (ev.extra["patient_table_relationship"], ev.extra["patient_orientation"],
                ev.extra["patient_orientation_modifier"]) == ("headfirst", "recumbent", "supine")
        assert ev.extra["patient_orientation_source"] == "Siemens private comment (PatientPosition HFS)"


def test_standard_orientation_codes_are_kept_and_not_marked_as_vendor(corpus_dir):
    doc = _corpus(corpus_dir, "philips_allura-xper_RF.dcm")
    ev = doc.events[0]
    assert (ev.extra["patient_orientation"], ev.extra["patient_orientation_modifier"]) == ("recumbent", "supine")
    assert "patient_orientation_source" not in ev.extra


def test_philips_private_shutters_give_the_collimated_field_area(corpus_dir):
    doc = _corpus(corpus_dir, "philips_allura-xper_RF.dcm")
    ev = doc.events[0]
    # shutters left/right 164.5 mm, top/bottom 131 mm at 1 m from the source; source to detector 1194 mm
    width, height = 329.0 * 1.194, 262.0 * 1.194
    assert ev.distance_source_to_detector_mm == 1194.0
    assert ev.collimated_field_area_m2 == pytest.approx(width * height / 1e6, rel=1e-9)
    assert ev.extra["collimated_field_size_mm"] == [pytest.approx(width, abs=1e-3), pytest.approx(height, abs=1e-3)]
    assert "Philips private shutters" in ev.extra["collimated_field_area_source"]


def test_philips_316_event_file_gets_an_area_wherever_shutters_and_distance_are_sent(corpus_dir):
    doc = _corpus(corpus_dir, "philips_allura-xper_RF_316events_no-orientation-modifier.dcm")

    def sid(e):
        p = e.extra.get("private", {})
        return e.distance_source_to_detector_mm or (p.get("Final Distance Source to Detector") or {}).get("value")

    usable = [e for e in doc.events if "Wedges and Shutters/Left Shutter" in e.extra.get("private", {}) and sid(e)]
    assert len(usable) == 73
    for e in usable:
        p = e.extra["private"]
        side = lambda k: p[f"Wedges and Shutters/{k} Shutter"]["value"]  # noqa: E731
        expected = (side("Left") + side("Right")) * (side("Top") + side("Bottom")) * (sid(e) / 1000) ** 2 / 1e6
        assert e.collimated_field_area_m2 == pytest.approx(expected)
    # no shutters, or no distance to scale them to the detector: no area (never a guess)
    assert all(e.collimated_field_area_m2 is None for e in doc.events if e not in usable)


def test_a_standard_collimated_field_area_is_never_replaced(corpus_dir):
    doc = _corpus(corpus_dir, "philips_veradius-unity_RF_mobile-carm_no-kvp.dcm")
    areas = {round(e.collimated_field_area_m2, 8) for e in doc.events}
    assert areas == {0.03894912, 0.05308584, 0.07028064}
    assert not any("collimated_field_area_source" in e.extra for e in doc.events)


@pytest.mark.parametrize("position, expected", [
    ("FFP", ("feet-first", "recumbent", "prone")),
    ("HFDL", ("headfirst", "recumbent", "left lateral decubitus")),
])
def test_builder_made_siemens_comment_positions(position, expected):
    comment = (f'<Root><PatientPosition><Position SRData="{position} "/><PositionTime SRData="12-May-16 10:06:48"/>'
               '</PatientPosition><AccumulatedMonoData><FluoroTime SRData="28"/></AccumulatedMonoData></Root>')
    spec = B.ProjectionRDSRSpec(manufacturer="Siemens", model="AXIOM-Artis", comment=comment,
                                events=[B.ProjectionEventSpec(dap_gy_cm2=1.0, dose_rp_gy=0.01),
                                        B.ProjectionEventSpec(dap_gy_cm2=2.0, dose_rp_gy=0.02)])
    doc = extract_bytes(B.to_bytes(B.build_projection_rdsr(spec)))
    assert len(doc.events) == 2
    for ev in doc.events:
        got = (ev.extra["patient_table_relationship"], ev.extra["patient_orientation"],
               ev.extra["patient_orientation_modifier"])
        assert got == expected


def test_an_unknown_siemens_position_is_a_warning_not_a_guess():
    comment = '<Root><PatientPosition><Position SRData="XYZ"/></PatientPosition></Root>'
    spec = B.ProjectionRDSRSpec(comment=comment, events=[B.ProjectionEventSpec(dap_gy_cm2=1.0, dose_rp_gy=0.01)])
    doc = extract_bytes(B.to_bytes(B.build_projection_rdsr(spec)))
    assert "patient_orientation" not in doc.events[0].extra
    assert any("patient position 'XYZ' not recognised" in w for w in doc.warnings)
