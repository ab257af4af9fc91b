"""Mammography and NM/PET through the real ingest (``dosereg.pipeline.flow.file_import``) and the real listener
(in-process, pynetdicom SCU): builder-made objects with known values (issue 16)."""
from __future__ import annotations

import datetime as dt
import io
import time

import pydicom
import pytest
from pynetdicom import AE, build_context

from dicom_listener import server as listener
from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import
from dosereg.rdsr import builder as B
from dosereg.registry.models import BreastDose, DoseObject, IrradiationEvent, RadiopharmaceuticalAdministration, Study
from dosereg.registry.selectors import study_breast_agd, study_nm_administrations
from tests.e2e.conftest import free_port


def approx(v):
    return pytest.approx(v, rel=1e-9)


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def _import(spool, tmp_path, ds, name=None):
    path = B.write(ds, tmp_path / f"{name or ds.SOPInstanceUID}.dcm")
    obj, _ = file_import(path=path, spool=spool)
    obj.refresh_from_db()
    return obj


WHEN = dt.datetime(2026, 3, 2, 9, 41, 7)


def _screening(study_uid):
    """Four views, each sent as For Presentation and For Processing: 8 images, 4 exposures."""
    out = []
    for i, (lat, view, dgy) in enumerate((("L", "CC", 0.0121), ("L", "MLO", 0.0134), ("R", "CC", 0.0110),
                                         ("R", "MLO", 0.0128))):
        for intent in ("FOR PRESENTATION", "FOR PROCESSING"):
            out.append(B.build_mg_image(study_instance_uid=study_uid, presentation_intent=intent, laterality=lat,
                                        view_position=view, organ_dose_dgy=dgy,
                                        acquisition_datetime=WHEN + dt.timedelta(seconds=40 * i)))
    return out


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["presentation_first", "processing_first"])
def test_mg_image_pair_is_one_event_whichever_arrives_first(spool, tmp_path, order):
    study_uid = B.deterministic_uid("mg-pair", order)
    pres, proc = (B.build_mg_image(study_instance_uid=study_uid, presentation_intent=i, acquisition_datetime=WHEN)
                  for i in ("FOR PRESENTATION", "FOR PROCESSING"))
    first, second = (pres, proc) if order == "presentation_first" else (proc, pres)
    a = _import(spool, tmp_path, first)
    b = _import(spool, tmp_path, second)
    assert a.status == b.status == DoseObject.STATUS_INGESTED
    study = Study.objects.get(study_instance_uid=study_uid)
    assert study.event_count == 1 and study.procedure_modality == "MG"
    (ev,) = IrradiationEvent.objects.filter(study=study)
    assert ev.agd_mgy == approx(1.25) and ev.compression_thickness_mm == approx(52)
    assert ev.compression_force_n == approx(110) and ev.entrance_exposure_at_rp_mgy == approx(5.9)
    assert (ev.laterality, ev.view, ev.anode_target_material, ev.filter_material) == ("L", "CC", "tungsten", "RHODIUM")
    assert ev.exposure_mas == approx(85) and ev.kvp == approx(29)
    assert sorted(ev.extra["image_sop_instance_uids"]) == sorted([a.sop_instance_uid, b.sop_instance_uid])
    assert any("counted once" in w and a.sop_instance_uid in w for w in b.warnings), b.warnings
    assert study_breast_agd(study.pk) == {"L": {"agd_mgy": approx(1.25), "events": 1, "source": "events"}}


@pytest.mark.django_db
def test_value_only_one_copy_carries_is_kept(spool, tmp_path):
    study_uid = B.deterministic_uid("mg-pair-partial")
    _import(spool, tmp_path, B.build_mg_image(study_instance_uid=study_uid, acquisition_datetime=WHEN))
    _import(spool, tmp_path, B.build_mg_image(study_instance_uid=study_uid, acquisition_datetime=WHEN,
                                              presentation_intent="FOR PROCESSING", organ_dose_dgy=None,
                                              entrance_dose_mgy=None))
    (ev,) = IrradiationEvent.objects.filter(study__study_instance_uid=study_uid)
    assert ev.agd_mgy == approx(1.25) and ev.entrance_exposure_at_rp_mgy == approx(5.9)


@pytest.mark.django_db
def test_screening_headers_cumulative_agd_per_breast(spool, tmp_path):
    study_uid = B.deterministic_uid("mg-screening")
    objs = [_import(spool, tmp_path, ds) for ds in _screening(study_uid)]
    assert all(o.status == DoseObject.STATUS_INGESTED for o in objs)
    study = Study.objects.get(study_instance_uid=study_uid)
    assert study.event_count == 4
    agd = study_breast_agd(study.pk)
    assert agd["L"]["agd_mgy"] == approx(1.21 + 1.34) and agd["L"]["events"] == 2
    assert agd["R"]["agd_mgy"] == approx(1.10 + 1.28) and agd["R"]["events"] == 2


@pytest.mark.django_db
def test_dx_pair_counts_dap_once(spool, tmp_path):
    study_uid = B.deterministic_uid("dx-pair")
    for intent in ("FOR PROCESSING", "FOR PRESENTATION"):
        _import(spool, tmp_path, B.build_dx_image(study_instance_uid=study_uid, presentation_intent=intent,
                                                  omit_irradiation_event_uid=True, acquisition_datetime=WHEN))
    study = Study.objects.get(study_instance_uid=study_uid)
    assert study.event_count == 1
    assert study.dap_total_gy_cm2 == approx(0.085)  # 0.85 dGy.cm2 once, not twice


@pytest.mark.django_db
def test_mammography_rdsr_stored(spool, tmp_path):
    spec = B.MammoRDSRSpec(events=[
        B.MammoEventSpec(laterality="L", view="CC", agd_mgy=1.21, compression_thickness_mm=48, compression_force_n=95,
                         kvp=28, exposure_uas=80000, entrance_exposure_at_rp_mgy=5.3),
        B.MammoEventSpec(laterality="R", view="MLO", agd_mgy=1.34, compression_thickness_mm=51, compression_force_n=101,
                         kvp=29, exposure_uas=84000, anode="molybdenum"),
    ])
    obj = _import(spool, tmp_path, B.build_mammo_rdsr(spec))
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    study = obj.study
    assert study.procedure_modality == "MG" and study.event_count == 2
    l_ev = IrradiationEvent.objects.get(study=study, laterality="L")
    assert (l_ev.agd_mgy, l_ev.compression_thickness_mm, l_ev.compression_force_n) == (approx(1.21), approx(48), approx(95))
    assert l_ev.view == "CC" and l_ev.view_code == "SCT:399162004" and l_ev.anode_target_material == "tungsten"
    assert l_ev.exposure_mas == approx(80) and l_ev.entrance_exposure_at_rp_mgy == approx(5.3)
    assert IrradiationEvent.objects.get(study=study, laterality="R").anode_target_material == "molybdenum"
    assert sorted(BreastDose.objects.filter(dose_object=obj).values_list("laterality", "accumulated_agd_mgy")) == [
        ("L", approx(1.21)), ("R", approx(1.34))]
    assert study_breast_agd(study.pk) == {"L": {"agd_mgy": approx(1.21), "events": 1, "source": "events"},
                                          "R": {"agd_mgy": approx(1.34), "events": 1, "source": "events"}}


@pytest.mark.django_db
def test_reported_accumulated_agd_used_when_events_carry_none(spool, tmp_path):
    spec = B.MammoRDSRSpec(events=[B.MammoEventSpec(laterality="L", agd_mgy=None, kvp=28)],
                           accumulated_agd_mgy={"L": 1.7})
    obj = _import(spool, tmp_path, B.build_mammo_rdsr(spec))
    assert study_breast_agd(obj.study_id) == {"L": {"agd_mgy": approx(1.7), "events": 0, "source": "reported"}}


def _rrdsr(study_uid, event_uid="1.2.826.0.1.3680043.8.498.1001", activity=251.3, **kw):
    return B.build_rrdsr(B.RRDSRSpec(study_instance_uid=study_uid, weight_kg=None, report_weight_kg=72.5,
                                     report_height_cm=168, administrations=[
                                         B.RadiopharmaceuticalSpec(administered_activity_mbq=activity,
                                                                   event_uid=event_uid,
                                                                   start=dt.datetime(2026, 3, 2, 8, 15))], **kw))


@pytest.mark.django_db
def test_rrdsr_stored_with_administration(spool, tmp_path, settings):
    study_uid = B.deterministic_uid("nm-study")
    obj = _import(spool, tmp_path, _rrdsr(study_uid))
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    assert obj.source_kind == "rrdsr" and obj.template_id == "10021"
    study = obj.study
    assert study.procedure_modality == "NM" and study.event_count == 0 and study.has_ionising_dose
    (a,) = RadiopharmaceuticalAdministration.objects.filter(study=study)
    assert a.administered_activity_mbq == approx(251.3) and a.radiopharmaceutical_code == "SCT:35321007"
    assert a.radionuclide_code == "SCT:77004003" and a.route_code == "SCT:47625008"
    assert a.patient_weight_kg == approx(72.5) and a.patient_size_m == approx(1.68)
    (row,) = study_nm_administrations(study.pk)
    assert row["effective_dose_msv"] is None and "ICRP 128" in row["effective_dose_detail"]["reason"]
    settings.NM_EFFECTIVE_DOSE_COEFFICIENTS = {
        "version": "test-1", "source": "test", "unit": "mSv/MBq",
        "coefficients": {"SCT:35321007": {"adult": 0.02, "verification": "✔", "source": "test row"}}}
    (row,) = study_nm_administrations(study.pk)
    assert row["effective_dose_msv"] == approx(0.02 * 251.3)
    assert row["effective_dose_detail"]["label"].startswith("population-average estimate")
    # the same administration reported again (another SOP Instance UID): one administration
    again = _import(spool, tmp_path, _rrdsr(study_uid, activity=251.3))
    assert again.status == DoseObject.STATUS_INGESTED
    assert RadiopharmaceuticalAdministration.objects.filter(study=study).count() == 1


@pytest.mark.django_db
def test_pet_ct_parts_kept_apart(spool, tmp_path):
    study_uid = B.deterministic_uid("petct")
    ct = B.build_ct_rdsr(B.CTRDSRSpec(study_instance_uid=study_uid, events=[
        B.CTEventSpec(ctdivol_mgy=3.1, dlp_mgy_cm=310.0)]))
    _import(spool, tmp_path, _rrdsr(study_uid))
    _import(spool, tmp_path, ct)
    study = Study.objects.get(study_instance_uid=study_uid)
    assert study.procedure_modality == "CT" and study.dlp_total_mgy_cm == approx(310.0) and study.event_count == 1
    (a,) = study_nm_administrations(study.pk)
    assert a["administered_activity_mbq"] == approx(251.3)


@pytest.mark.django_db
def test_patient_dose_sr_recorded_and_non_dose_sr_kept(spool, tmp_path):
    study_uid = B.deterministic_uid("prdsr")
    obj = _import(spool, tmp_path, B.build_patient_dose_sr(study_instance_uid=study_uid))
    assert obj.status == DoseObject.STATUS_INGESTED and obj.source_kind == "patient_dose_sr"
    assert obj.study.study_instance_uid == study_uid and obj.study.procedure_modality == ""
    assert any("TID 10030" in w for w in obj.warnings)
    report = B.build_patient_dose_sr(study_instance_uid=study_uid)
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"  # a Comprehensive SR that is no dose report
    other = _import(spool, tmp_path, report, name="comprehensive")
    assert other.status == DoseObject.STATUS_NOT_DOSE
    assert other.quarantine_reason.startswith("not a dose object")


# --- the real listener (in-process, pynetdicom SCU) -----------------------------------------------
@pytest.fixture
def running(tmp_path, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPOOL_MIN_FREE_BYTES = 0
    port = free_port()
    server, stats = listener.start_listener(port=port, address="127.0.0.1", spool_dir=tmp_path / "spool",
                                            allowed=["TESTSCU"])
    yield port
    server.shutdown()


def _send_all(port, datasets):
    datasets = [pydicom.dcmread(io.BytesIO(B.to_bytes(ds))) for ds in datasets]  # as a file (with its meta)
    ae = AE(ae_title="TESTSCU")
    ae.requested_contexts = [build_context(c) for c in sorted({ds.SOPClassUID for ds in datasets})]
    assoc = ae.associate("127.0.0.1", port, ae_title="DOSEREG")
    assert assoc.is_established
    statuses = [assoc.send_c_store(ds).Status for ds in datasets]
    assoc.release()
    return statuses


def _settled(uid, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = DoseObject.objects.filter(sop_instance_uid=uid).first()
        if obj is not None and obj.status != DoseObject.STATUS_RECEIVED:
            return obj
        time.sleep(0.05)
    raise AssertionError(f"{uid} not ingested within {timeout}s")


@pytest.mark.django_db(transaction=True)
def test_listener_mg_pair_rrdsr_and_patient_dose_sr(running):
    mg_study = B.deterministic_uid("listener-mg")
    nm_study = B.deterministic_uid("listener-nm")
    mg = [B.build_mg_image(study_instance_uid=mg_study, presentation_intent=i, acquisition_datetime=WHEN)
          for i in ("FOR PROCESSING", "FOR PRESENTATION")]
    rr = _rrdsr(nm_study)
    pr = B.build_patient_dose_sr(study_instance_uid=nm_study)
    assert _send_all(running, [*mg, rr, pr]) == [0x0000] * 4
    objs = [_settled(ds.SOPInstanceUID) for ds in (*mg, rr, pr)]
    assert [o.status for o in objs] == [DoseObject.STATUS_INGESTED] * 4, [o.quarantine_reason for o in objs]
    study = Study.objects.get(study_instance_uid=mg_study)
    assert study.event_count == 1 and study_breast_agd(study.pk)["L"]["agd_mgy"] == approx(1.25)
    nm_study_row = Study.objects.get(study_instance_uid=nm_study)
    (a,) = RadiopharmaceuticalAdministration.objects.filter(study=nm_study_row)
    assert a.administered_activity_mbq == approx(251.3)


def test_inspect_dose_shows_mammography_and_administrations(tmp_path, capsys):
    import json

    from django.core.management import call_command

    rr = B.write(_rrdsr(B.deterministic_uid("inspect-nm")), tmp_path / "rr.dcm")
    mg = B.write(B.build_mammo_rdsr(B.MammoRDSRSpec(events=[B.MammoEventSpec(laterality="R", agd_mgy=1.4)])),
                 tmp_path / "mg.dcm")
    call_command("inspect_dose", str(rr), str(mg))
    out = json.loads(capsys.readouterr().out)
    (a,) = out[0]["radiopharmaceuticals"]
    assert a["administered_activity_mbq"] == approx(251.3) and a["effective_dose_msv"] is None
    assert a["effective_dose_detail"]["table_version"] == "dosereg-icrp128-2026.12-1"
    assert out[1]["breasts"] == [{"laterality": "R", "accumulated_agd_mgy": approx(1.4)}]
    assert out[1]["events"][0]["agd_mgy"] == approx(1.4) and out[1]["events"][0]["laterality"] == "R"


@pytest.mark.django_db
def test_rdsr_and_images_of_the_same_exposures_count_agd_once(spool, tmp_path):
    """A unit sends an RDSR and its images, whose headers lack the RDSR's Irradiation Event UID: the per-breast AGD
    comes from the RDSR's events, not from both."""
    study_uid = B.deterministic_uid("mg-rdsr-and-images")
    _import(spool, tmp_path, B.build_mammo_rdsr(B.MammoRDSRSpec(study_instance_uid=study_uid, events=[
        B.MammoEventSpec(laterality="L", agd_mgy=1.25, datetime=WHEN)])))
    _import(spool, tmp_path, B.build_mg_image(study_instance_uid=study_uid, acquisition_datetime=WHEN))
    agd = study_breast_agd(Study.objects.get(study_instance_uid=study_uid).pk)
    assert agd == {"L": {"agd_mgy": approx(1.25), "events": 1, "source": "events"}}


@pytest.mark.django_db
def test_pet_headers_one_administration_and_rrdsr_wins(spool, tmp_path):
    study_uid = B.deterministic_uid("pet-headers")
    series = B.deterministic_uid("pet-series")
    start = dt.datetime(2026, 3, 2, 8, 12, 30)
    objs = [_import(spool, tmp_path, B.build_nm_image(study_instance_uid=study_uid, series_instance_uid=series,
                                                      instance_number=i, start=start, total_dose_bq=248.0e6))
            for i in range(1, 4)]
    assert all(o.status == DoseObject.STATUS_INGESTED and o.source_kind == "nm_header" for o in objs)
    study = Study.objects.get(study_instance_uid=study_uid)
    assert study.procedure_modality == "PT" and study.has_ionising_dose
    assert RadiopharmaceuticalAdministration.objects.filter(study=study).count() == 1
    (row,) = study_nm_administrations(study.pk)
    assert row["administered_activity_mbq"] == approx(248.0) and row["source"] == "nm_header"
    _import(spool, tmp_path, _rrdsr(study_uid, activity=251.3))
    (row,) = study_nm_administrations(study.pk)  # the RRDSR's measured activity, not the header's as well
    assert row["administered_activity_mbq"] == approx(251.3) and row["source"] == "rrdsr"


@pytest.mark.django_db(transaction=True)
def test_export_import_keeps_breast_doses_and_administrations(spool, tmp_path):
    from django.core.management import call_command

    from dosereg.ops.transfer import registry_export, registry_import

    mg = _import(spool, tmp_path, B.build_mammo_rdsr(B.MammoRDSRSpec(events=[
        B.MammoEventSpec(laterality="R", agd_mgy=1.4, compression_thickness_mm=50)])))
    nm_obj = _import(spool, tmp_path, _rrdsr(B.deterministic_uid("export-nm")))
    mg_study, nm_study = mg.study.study_instance_uid, nm_obj.study.study_instance_uid
    counts = registry_export(tmp_path / "registry.jsonl")
    assert counts["breast"] == 1 and counts["administration"] == 1
    call_command("flush", interactive=False, verbosity=0)
    assert not Study.objects.exists()
    registry_import(tmp_path / "registry.jsonl")
    assert list(BreastDose.objects.values_list("laterality", "accumulated_agd_mgy")) == [("R", approx(1.4))]
    assert IrradiationEvent.objects.get(study__study_instance_uid=mg_study).agd_mgy == approx(1.4)
    (a,) = RadiopharmaceuticalAdministration.objects.all()
    assert a.administered_activity_mbq == approx(251.3) and a.study.study_instance_uid == nm_study


@pytest.mark.django_db(transaction=True)
def test_listener_accepts_pet_images_and_records_the_administration(running):
    """PET/NM images are offered by the listener (a unit without RRDSR still records its administered activity); the
    SCU sends Implicit VR, where only known sequence tags are parsed as sequences (the reader's SQ_TAGS)."""
    study_uid = B.deterministic_uid("listener-pet")
    pet = [B.build_nm_image(study_instance_uid=study_uid, series_instance_uid=B.deterministic_uid("listener-pet-s"),
                            instance_number=i, start=dt.datetime(2026, 3, 2, 8, 12, 30), total_dose_bq=248.0e6)
           for i in (1, 2)]
    assert _send_all(running, pet) == [0x0000] * 2
    objs = [_settled(ds.SOPInstanceUID) for ds in pet]
    assert [o.status for o in objs] == [DoseObject.STATUS_INGESTED] * 2, [o.quarantine_reason for o in objs]
    (row,) = study_nm_administrations(Study.objects.get(study_instance_uid=study_uid).pk)
    assert row["administered_activity_mbq"] == approx(248.0)
