"""Registry ingest services against the real corpus: idempotency, cumulative RDSRs, quarantine, query counts."""
from __future__ import annotations

import shutil
from datetime import timedelta

import pydicom
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import, objects_reprocess
from dosereg.registry.models import Device, DoseObject, IrradiationEvent, Study
from dosereg.registry.selectors import registry_stats
from dosereg.registry.ingest import dose_object_ingest
from dosereg.registry.receiving import DUPLICATE, dose_object_register, dose_objects_sweep

pytestmark = pytest.mark.django_db


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def by_name(files, fragment):
    return next(f for f in files if fragment in f.name)


def test_whole_corpus_imports_without_quarantine_and_reimport_changes_nothing(corpus_files, spool):
    for f in corpus_files:
        obj, _ = file_import(path=f, spool=spool)
        assert obj.status == DoseObject.STATUS_INGESTED, (f.name, obj.quarantine_reason)
    stats = registry_stats()
    assert stats["objects_ingested"] == len(corpus_files)
    assert stats["objects_quarantined"] == 0
    events_before = list(IrradiationEvent.objects.order_by("id").values_list("id", "irradiation_event_uid"))
    for f in corpus_files:
        _, outcome = file_import(path=f, spool=spool)
        assert outcome == DUPLICATE
    assert registry_stats() == stats
    assert list(IrradiationEvent.objects.order_by("id").values_list("id", "irradiation_event_uid")) == events_before


@pytest.mark.parametrize("order", [(1, 2, 3), (3, 1, 2), (2, 3, 1), (3, 2, 1)])
def test_siemens_cumulative_ct_rdsrs_never_double_count(corpus_files, spool, order):
    files = {i: by_name(corpus_files, f"CT_multi-{i}") for i in (1, 2, 3)}
    last = pydicom.dcmread(files[3])
    for i in order:
        obj, _ = file_import(path=files[i], spool=spool)
        assert obj.status == DoseObject.STATUS_INGESTED
    study = Study.objects.get(study_instance_uid=last.StudyInstanceUID)
    assert study.event_count == 3
    assert IrradiationEvent.objects.filter(study=study).count() == 3
    third = DoseObject.objects.get(sop_instance_uid=last.SOPInstanceUID)
    active = DoseObject.objects.filter(study=study, superseded_by__isnull=True)
    assert list(active) == [third]
    # the study's DLP total is the third (superset) report's total, not the sum of the three
    assert study.dlp_total_mgy_cm == pytest.approx(third.dlp_total_mgy_cm, rel=1e-6)
    assert study.dlp_total_mgy_cm == pytest.approx(
        sum(IrradiationEvent.objects.filter(study=study).values_list("dlp_mgy_cm", flat=True)), rel=1e-3
    )


def test_316_event_file_is_stored_in_few_statements(corpus_files, spool):
    f = by_name(corpus_files, "316events")
    data = f.read_bytes()
    ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    stored = spool.store(str(ds.SOPInstanceUID), data)
    obj, _ = dose_object_register(sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid="", path=stored.path,
                                  sha256=stored.sha256, size_bytes=stored.size_bytes, enqueue=False)
    with CaptureQueriesContext(connection) as ctx:
        obj = dose_object_ingest(dose_object_id=obj.pk)
    assert obj.status == DoseObject.STATUS_INGESTED
    assert IrradiationEvent.objects.filter(dose_object=obj).count() == 316
    assert len(ctx.captured_queries) < 50, len(ctx.captured_queries)
    study = Study.objects.get(pk=obj.study_id)
    assert study.dap_total_gy_cm2 == pytest.approx(469, rel=0.01)
    assert study.dose_rp_max_plane_gy == pytest.approx(7.7, rel=0.01)


def test_bad_object_is_quarantined_with_reason_and_can_be_reprocessed(tmp_path, spool, corpus_files):
    bad = tmp_path / "truncated.dcm"
    good = by_name(corpus_files, "canon_cxdi_DX.dcm")
    bad.write_bytes(good.read_bytes()[:1500])
    obj, _ = file_import(path=bad, spool=spool)
    assert obj.status == DoseObject.STATUS_QUARANTINED
    assert obj.quarantine_reason
    assert registry_stats()["objects_quarantined"] == 1
    # "fix" the stored original (as a parser fix would) and reprocess: nothing was lost
    shutil.copyfile(good, obj.path)
    objects_reprocess(queryset=DoseObject.objects.filter(pk=obj.pk), inline=True)
    obj.refresh_from_db()
    assert obj.status == DoseObject.STATUS_INGESTED


def test_sweeper_reenqueues_stranded_objects_and_registers_orphan_files(
    corpus_files, spool, settings, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    a = by_name(corpus_files, "canon_cxdi_DX.dcm")
    b = by_name(corpus_files, "siemens_fluorospot-compact-fd_DX")
    # a: stored and recorded, but the broker was down (never enqueued)
    ds = pydicom.dcmread(a, specific_tags=["SOPInstanceUID"])
    stored = spool.store(str(ds.SOPInstanceUID), a.read_bytes())
    obj, _ = dose_object_register(sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid="", path=stored.path,
                                  sha256=stored.sha256, size_bytes=stored.size_bytes, enqueue=False)
    DoseObject.objects.filter(pk=obj.pk).update(enqueued_at=timezone.now() - timedelta(hours=1))
    # b: stored, but the database was down when it arrived (no row at all)
    ds_b = pydicom.dcmread(b, specific_tags=["SOPInstanceUID"])
    spool.store(str(ds_b.SOPInstanceUID), b.read_bytes())

    with django_capture_on_commit_callbacks(execute=True):
        result = dose_objects_sweep(spool=spool, stale_after_s=60)
    assert result == {"requeued": 1, "registered": 1}
    assert set(DoseObject.objects.values_list("status", flat=True)) == {DoseObject.STATUS_INGESTED}
    assert dose_objects_sweep(spool=spool, stale_after_s=60) == {"requeued": 0, "registered": 0}


def test_device_identity_survives_new_observer_uid(corpus_files, spool, tmp_path):
    f = by_name(corpus_files, "ge_oec-esp21")
    file_import(path=f, spool=spool)
    assert Device.objects.count() == 1
    ds = pydicom.dcmread(f)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    # the unit was serviced: same station/model, new Device Observer UID in the SR tree and header
    old = None
    for item in ds.ContentSequence:
        for sub in [item, *getattr(item, "ContentSequence", [])]:
            if sub.ConceptNameCodeSequence[0].CodeValue == "121012":  # GE sends it as TEXT
                attr = "UID" if sub.ValueType == "UIDREF" else "TextValue"
                old = getattr(sub, attr)
                setattr(sub, attr, pydicom.uid.generate_uid())
    assert old is not None
    out = tmp_path / "serviced.dcm"
    ds.save_as(out)
    obj, _ = file_import(path=out, spool=spool)
    assert obj.status == DoseObject.STATUS_INGESTED
    assert Device.objects.count() == 1
    assert Device.objects.get().device_observer_uid != old


@pytest.mark.django_db(transaction=True)  # foreign keys are checked at COMMIT, as in a worker
def test_a_remembered_device_that_was_deleted_is_resolved_again(corpus_files, spool, tmp_path):
    """Workers remember device resolutions for a minute; a device deleted meanwhile (registry cleared,
    restored from a backup) must not make the next object from that unit fail."""
    from dosereg.rdsr.builder import rewrite_uids
    from dosereg.registry import device_resolution

    device_resolution._DEVICE_CACHE.clear()
    f = by_name(corpus_files, "ge_oec-esp21")
    first, _ = file_import(path=f, spool=spool)
    assert first.status == DoseObject.STATUS_INGESTED
    assert device_resolution._DEVICE_CACHE, "the resolution is remembered once committed"
    gone = first.study.device_id
    DoseObject.objects.all().delete()
    Study.objects.all().delete()
    Device.objects.all().delete()
    out = tmp_path / "next.dcm"
    out.write_bytes(rewrite_uids(f.read_bytes()))
    obj, _ = file_import(path=out, spool=spool)
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    assert obj.study.device_id != gone and Device.objects.filter(pk=obj.study.device_id).exists()


def test_mr_header_is_recorded_without_ionising_dose_and_pixels_are_not_kept(spool, tmp_path):
    from dosereg.rdsr import builder as B
    from dosereg.registry.models import MRExam

    ds = B.build_mr_image()
    path = tmp_path / "mr.dcm"
    B.write(ds, path)
    assert "PixelData" in pydicom.dcmread(path)
    obj, _ = file_import(path=path, spool=spool)
    assert obj.status == DoseObject.STATUS_INGESTED, obj.quarantine_reason
    mr = MRExam.objects.get(dose_object=obj)
    assert mr.sar_w_kg == pytest.approx(float(ds.SAR))
    assert Study.objects.get(pk=obj.study_id).has_ionising_dose is False
    assert "PixelData" not in pydicom.dcmread(obj.path)


TOTAL_FIELDS = ("dap_total_gy_cm2", "dose_rp_max_plane_gy", "fluoro_time_total_s", "dlp_total_mgy_cm", "ctdivol_max_mgy",
                "event_count", "has_ionising_dose", "protocol_names")


def test_each_study_keeps_its_events_distinct_protocol_names(corpus_files, spool):
    """``Study.protocol_names`` (the browser's protocol search) is exactly the distinct non-blank protocol names of
    the study's events after the whole corpus (new studies, later and superseding reports), one per line."""
    for f in corpus_files:
        file_import(path=f, spool=spool)
    expected: dict[int, set[str]] = {}
    for study_id, protocol in IrradiationEvent.objects.values_list("study_id", "protocol"):
        expected.setdefault(study_id, set())
        if protocol:
            expected[study_id].add(protocol)
    with_names = 0
    for study_id, names in Study.objects.values_list("pk", "protocol_names"):
        assert names == "\n".join(sorted(expected.get(study_id, ()))), study_id
        with_names += bool(names)
    assert with_names >= 10


def test_new_study_totals_from_the_document_equal_a_recompute(corpus_files, spool):
    """A new study is inserted with totals computed from its first report; they must be what the
    database recompute (used for every later report of the study) gives, for every corpus file."""
    from dosereg.registry.totals import study_recompute_totals

    checked = 0
    for f in corpus_files:
        obj, outcome = file_import(path=f, spool=spool)
        if outcome == DUPLICATE or obj.study is None:
            continue
        if DoseObject.objects.filter(study=obj.study).count() > 1:
            continue  # a later report of an existing study: recomputed in the database anyway
        fast = Study.objects.filter(pk=obj.study_id).values(*TOTAL_FIELDS).get()
        study_recompute_totals(study_id=obj.study_id)
        slow = Study.objects.filter(pk=obj.study_id).values(*TOTAL_FIELDS).get()
        for field in TOTAL_FIELDS:
            if isinstance(slow[field], float):
                assert fast[field] == pytest.approx(slow[field], rel=1e-12), (f.name, field)
            else:
                assert fast[field] == slow[field], (f.name, field)
        checked += 1
    assert checked >= 10
