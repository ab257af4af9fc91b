"""Mammography (TID 10010 rows, MG image headers, one event per exposure) and NM/PET (Radiopharmaceutical Radiation
Dose SR, Patient Radiation Dose SR, ICRP 128 table) extraction, on builder-made objects with known values (issue 16)."""
from __future__ import annotations

import datetime as dt

import pytest

from dosereg.rdsr import NotADoseObject, builder as B, extract_bytes, inspect_dict
from dosereg.rdsr import nm
from dosereg.rdsr.records import IMAGE_HEADER, PATIENT_DOSE_SR, RRDSR, RadiopharmaceuticalAdministration


def approx(v):
    return pytest.approx(v, rel=1e-9)


def _mammo_spec(**kw):
    return B.MammoRDSRSpec(events=[
        B.MammoEventSpec(laterality="L", view="CC", agd_mgy=1.21, entrance_exposure_at_rp_mgy=5.3,
                         compression_thickness_mm=48, compression_force_n=95, half_value_layer_mm=0.55, kvp=28,
                         exposure_uas=80000, exposure_time_ms=900),
        B.MammoEventSpec(laterality="L", view="MLO", agd_mgy=1.34, compression_thickness_mm=51, compression_force_n=101,
                         kvp=29, exposure_uas=84000),
        B.MammoEventSpec(laterality="R", view="CC", agd_mgy=1.10, compression_thickness_mm=45, compression_force_n=90,
                         kvp=28, exposure_uas=76000, anode="molybdenum", filter_material="molybdenum"),
    ], **kw)


def test_mammography_rdsr_events_and_accumulated_agd_per_breast():
    d = extract_bytes(B.to_bytes(B.build_mammo_rdsr(_mammo_spec())))
    assert d.procedure_modality == "MG" and d.template_id == "10001" and d.procedure_reported == "SCT:71651007"
    assert [(b.laterality, b.accumulated_agd_mgy) for b in d.breasts] == [("L", approx(2.55)), ("R", approx(1.10))]
    e1, e2, e3 = d.events
    assert (e1.laterality, e1.view, e1.view_code) == ("L", "CC", "SCT:399162004")
    assert e1.agd_mgy == approx(1.21) and e1.entrance_exposure_at_rp_mgy == approx(5.3)
    assert e1.compression_thickness_mm == approx(48) and e1.compression_force_n == approx(95)
    assert e1.kvp == approx(28) and e1.extra["exposure_uas"] == approx(80000) and e1.exposure_time_ms == approx(900)
    assert e1.extra["half_value_layer_mm"] == approx(0.55)
    assert e1.anode_target_material == "tungsten" and e1.filter_material == "Rhodium"
    assert e1.target_region_code == "SCT:76752008" and e1.event_type == "stationary"
    assert (e2.view, e2.view_code) == ("MLO", "SCT:399368009")
    assert e3.laterality == "R" and e3.anode_target_material == "molybdenum" and e3.filter_material == "Molybdenum"
    assert e1.reference_point_definition == "4.2cm above Breast Support Surface"
    info = inspect_dict(d)
    assert info["breasts"] == [{"laterality": "L", "accumulated_agd_mgy": approx(2.55)},
                               {"laterality": "R", "accumulated_agd_mgy": approx(1.10)}]
    ev = info["events"][0]
    for key, value in (("agd_mgy", 1.21), ("compression_thickness_mm", 48), ("compression_force_n", 95),
                       ("entrance_exposure_at_rp_mgy", 5.3), ("kvp", 28), ("exposure_uas", 80000)):
        assert ev[key] == approx(value), key
    assert (ev["laterality"], ev["view"], ev["anode_target_material"]) == ("L", "CC", "tungsten")


def test_mammography_accumulated_agd_as_the_unit_states_it():
    """The reported per-breast values are kept as sent, even when they are not the sum of the events."""
    d = extract_bytes(B.to_bytes(B.build_mammo_rdsr(_mammo_spec(accumulated_agd_mgy={"L": 2.6, "R": 1.2}))))
    assert {b.laterality: b.accumulated_agd_mgy for b in d.breasts} == {"L": approx(2.6), "R": approx(1.2)}


def test_mg_image_header_organ_dose_is_dgy():
    """(0040,0316) Organ Dose is in dGy (PS3.3 X-Ray Acquisition Dose Module): 0.0125 dGy = 1.25 mGy AGD."""
    d = extract_bytes(B.to_bytes(B.build_mg_image(organ_dose_dgy=0.0125, half_value_layer_mm=0.5)))
    assert d.source_kind == IMAGE_HEADER and d.procedure_modality == "MG"
    (e,) = d.events
    assert e.agd_mgy == approx(1.25)
    assert e.extra["agd_source"].startswith("(0040,0316) Organ Dose (dGy)")
    assert e.compression_thickness_mm == approx(52) and e.compression_force_n == approx(110)
    assert e.entrance_exposure_at_rp_mgy == approx(5.9)
    assert e.anode_target_material == "tungsten" and e.filter_material == "RHODIUM"
    assert (e.view, e.laterality, e.presentation_intent) == ("CC", "L", "FOR PRESENTATION")
    assert e.kvp == approx(29) and e.extra["exposure_uas"] == approx(85000)
    assert e.extra["half_value_layer_mm"] == approx(0.5)
    assert not [w for w in d.warnings if "no dose attribute" in w]


def test_organ_dose_of_another_organ_is_not_an_agd():
    d = extract_bytes(B.to_bytes(B.build_mg_image(organ_exposed="GONADS")))
    (e,) = d.events
    assert e.agd_mgy is None and e.extra["organ_dose_mgy"] == approx(1.25) and e.extra["organ_exposed"] == "GONADS"


def _pair(build, **kw):
    study = B.deterministic_uid("pair-study", build.__name__)
    when = dt.datetime(2026, 3, 2, 9, 41, 7)
    docs = [extract_bytes(B.to_bytes(build(presentation_intent=intent, study_instance_uid=study,
                                           acquisition_datetime=when, **kw)))
            for intent in ("FOR PRESENTATION", "FOR PROCESSING")]
    return docs


@pytest.mark.parametrize("build,kw", [(B.build_mg_image, {}),
                                      (B.build_dx_image, {"omit_irradiation_event_uid": True})])
def test_presentation_and_processing_copies_share_the_event_key(build, kw):
    pres, proc = _pair(build, **kw)
    assert pres.sop_instance_uid != proc.sop_instance_uid and pres.sop_class_uid != proc.sop_class_uid
    assert pres.events[0].irradiation_event_uid == proc.events[0].irradiation_event_uid
    assert pres.events[0].irradiation_event_uid.startswith("exposure-")
    assert {pres.events[0].presentation_intent, proc.events[0].presentation_intent} == {"FOR PRESENTATION",
                                                                                           "FOR PROCESSING"}
    # another exposure (other view, or another second) is another event
    other = extract_bytes(B.to_bytes(build(study_instance_uid=pres.study_instance_uid, view_position="MLO",
                                           acquisition_datetime=dt.datetime(2026, 3, 2, 9, 41, 7), **kw)))
    later = extract_bytes(B.to_bytes(build(study_instance_uid=pres.study_instance_uid,
                                           acquisition_datetime=dt.datetime(2026, 3, 2, 9, 41, 8), **kw)))
    keys = {pres.events[0].irradiation_event_uid, other.events[0].irradiation_event_uid,
            later.events[0].irradiation_event_uid}
    assert len(keys) == 3


def test_header_irradiation_event_uid_is_the_event_key():
    d = extract_bytes(B.to_bytes(B.build_dx_image(irradiation_event_uid="1.2.826.0.1.3680043.8.498.99")))
    assert d.events[0].irradiation_event_uid == "1.2.826.0.1.3680043.8.498.99"
    assert d.events[0].extra["image_sop_instance_uid"] == d.sop_instance_uid


def test_radiopharmaceutical_radiation_dose_sr():
    start = dt.datetime(2026, 3, 2, 8, 15, 0)
    spec = B.RRDSRSpec(weight_kg=None, size_m=None, report_weight_kg=72.5, report_height_cm=168, administrations=[
        B.RadiopharmaceuticalSpec(administered_activity_mbq=251.3, start=start, volume_ml=4.2,
                                  event_uid="1.2.826.0.1.3680043.8.498.77"),
        B.RadiopharmaceuticalSpec(agent=("CODE1", "99LOCAL", "Tc-99m MDP"), radionuclide=("RN1", "99LOCAL", "Tc-99m"),
                                  half_life_s=21624.12, administered_activity_mbq=20.0, activity_unit=("mCi", "UCUM", "mCi"),
                                  route=None),
    ])
    d = extract_bytes(B.to_bytes(B.build_rrdsr(spec)))
    assert d.sop_class_uid == "1.2.840.10008.5.1.4.1.1.88.68"
    assert d.source_kind == RRDSR and d.template_id == "10021" and d.procedure_modality == "NM"
    assert d.events == [] and d.planes == []
    a, b = d.radiopharmaceuticals
    assert (a.radiopharmaceutical_code, a.radionuclide_code, a.route_code) == ("SCT:35321007", "SCT:77004003",
                                                                               "SCT:47625008")
    assert a.administered_activity_mbq == approx(251.3) and a.start_datetime == start
    assert a.radionuclide_half_life_s == approx(6586.2) and a.volume_ml == approx(4.2)
    assert a.event_uid == "1.2.826.0.1.3680043.8.498.77"
    assert b.administered_activity_mbq == pytest.approx(20.0, rel=1e-6)  # sent as 20/37 mCi
    assert b.radiopharmaceutical == "Tc-99m MDP" and b.route is None
    assert d.patient.weight_kg == approx(72.5) and d.patient.size_m == approx(1.68)  # TID 10023 (header empty)
    assert d.start_of_irradiation is not None
    info = inspect_dict(d)
    assert info["radiopharmaceuticals"][0]["administered_activity_mbq"] == approx(251.3)
    assert info["radiopharmaceuticals"][0]["start_datetime"] == "2026-03-02T08:15:00"


def test_header_weight_wins_over_the_report():
    d = extract_bytes(B.to_bytes(B.build_rrdsr(B.RRDSRSpec(weight_kg=80.0, report_weight_kg=72.5))))
    assert d.patient.weight_kg == approx(80.0)


def test_patient_radiation_dose_sr_is_recorded_not_refused():
    d = extract_bytes(B.to_bytes(B.build_patient_dose_sr(study_instance_uid="1.2.826.0.1.3680043.8.498.5")))
    assert d.source_kind == PATIENT_DOSE_SR and d.template_id == "10030"
    assert d.study_instance_uid == "1.2.826.0.1.3680043.8.498.5" and d.events == []
    assert any("Patient Radiation Dose SR (TID 10030) recorded" in w for w in d.warnings)


def test_comprehensive_sr_without_dose_content_is_not_a_dose_object():
    ds = B.build_patient_dose_sr()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    with pytest.raises(NotADoseObject) as ei:
        extract_bytes(B.to_bytes(ds))
    assert ei.value.reason.startswith("not a dose object: Comprehensive SR without radiation dose content")


def test_icrp128_table_ships_no_unverified_coefficient():
    table = nm.ICRP128_TABLE
    assert table["version"] and "ICRP Publication 128" in table["source"] and table["unit"] == "mSv/MBq"
    assert table["coefficients"] == {}  # none could be confirmed against the reference file
    adm = RadiopharmaceuticalAdministration(radiopharmaceutical_code="SCT:35321007", administered_activity_mbq=250.0)
    e, detail = nm.effective_dose(adm, table)
    assert e is None and "read from ICRP 128" in detail["reason"]
    assert detail["label"].startswith("population-average estimate")


def test_effective_dose_from_a_site_verified_row():
    table = {"version": "site-2026-1", "source": "ICRP 128", "unit": "mSv/MBq",
             "coefficients": {"SCT:35321007": {"adult": 0.02, "verification": "✔", "source": "site physicist, ICRP 128"}}}
    adm = RadiopharmaceuticalAdministration(radiopharmaceutical_code="SCT:35321007", administered_activity_mbq=250.0)
    e, detail = nm.effective_dose(adm, table, age_years=54)
    assert e == approx(5.0) and detail["table_version"] == "site-2026-1" and detail["source"] == "site physicist, ICRP 128"
    e, detail = nm.effective_dose(adm, table, age_years=9)
    assert e is None and "paediatric" in detail["reason"]


def test_without_acquisition_time_each_image_is_its_own_event():
    """A content date-time differs between the copies: no exposure key is derived from it."""
    ds = B.build_mg_image()
    for kw in ("AcquisitionDateTime", "AcquisitionDate", "AcquisitionTime"):
        delattr(ds, kw)
    d = extract_bytes(B.to_bytes(ds))
    assert d.events[0].irradiation_event_uid == d.sop_instance_uid


def test_dcmtk_reads_the_new_fixtures(tmp_path):
    """dsrdump (DCMTK) parses the builder's mammography RDSR, RRDSR and Patient Radiation Dose SR without an error
    (its IOD relationship checks included); dcmdump reads the MG images."""
    from tests.rdsr.test_builder import dcmdump, dsrdump

    out = dsrdump(B.write(B.build_mammo_rdsr(_mammo_spec()), tmp_path / "mg-rdsr.dcm"))
    assert "Accumulated Average Glandular Dose" in out and "Compression Force" in out and '"1.21" (mGy' in out
    out = dsrdump(B.write(B.build_rrdsr(B.RRDSRSpec(report_weight_kg=70.0)), tmp_path / "rrdsr.dcm"))
    assert "Radiopharmaceutical Radiation Dose SR" in out and '"Administered activity")="250" (MBq' in out
    out = dsrdump(B.write(B.build_patient_dose_sr(), tmp_path / "prdsr.dcm"))
    assert "Patient Radiation Dose Report" in out
    for intent in ("FOR PRESENTATION", "FOR PROCESSING"):
        out = dcmdump(B.write(B.build_mg_image(presentation_intent=intent), tmp_path / "mg.dcm"))
        assert "(0040,0316) DS [0.0125]" in out and f"[{intent}]" in out


@pytest.mark.parametrize("modality,time_only", [("PT", False), ("NM", True)])
def test_nm_pet_image_header_administration(modality, time_only):
    """Radiopharmaceutical Information Sequence (0054,0016): Radionuclide Total Dose (0018,1074) is in Bq."""
    start = dt.datetime(2026, 3, 2, 8, 12, 30)
    ds = B.build_nm_image(modality=modality, total_dose_bq=251.3e6, start=start, start_as_time_only=time_only,
                          study_instance_uid="1.2.826.0.1.3680043.8.498.9")
    d = extract_bytes(B.to_bytes(ds))
    assert d.source_kind == "nm_header" and d.procedure_modality == modality and d.events == []
    (a,) = d.radiopharmaceuticals
    assert a.administered_activity_mbq == approx(251.3) and a.start_datetime == start
    assert (a.radiopharmaceutical_code, a.radionuclide_code) == ("SCT:35321007", "SCT:77004003")
    assert a.radionuclide_half_life_s == approx(6586.2) and a.route == "Intravenous route"
    # every slice of the series carries it: one key
    other = extract_bytes(B.to_bytes(B.build_nm_image(modality=modality, total_dose_bq=251.3e6, start=start,
                                                      start_as_time_only=time_only, instance_number=2,
                                                      study_instance_uid="1.2.826.0.1.3680043.8.498.9")))
    assert other.radiopharmaceuticals[0].event_uid == a.event_uid
