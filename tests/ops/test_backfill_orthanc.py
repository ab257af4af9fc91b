"""Backfill from a real Orthanc loaded with the corpus: C-GET (in-process) and C-MOVE (to the real listener + worker).

Acceptance (issue 6): every SOP Instance UID Orthanc holds arrives exactly once; a second run imports nothing new.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command

from dicom_listener.backfill import Backfill, parse_date, parse_remote
from dosereg.ops.models import BackfillItem, BackfillRun
from dosereg.registry.models import DoseObject
from dosereg.registry.selectors import registry_stats
from tests.conftest import require
from tests.e2e.conftest import free_port, wait_until
from tests.ops.orthanc import ORTHANC, Orthanc

pytestmark = pytest.mark.e2e

DATES = {"date_from": "1990-01-01", "date_to": "2030-12-31"}


def start_orthanc(tmp_path, corpus_files, modalities) -> Orthanc:
    require(os.path.exists(ORTHANC), f"Orthanc ({ORTHANC})")
    o = Orthanc(tmp_path / "orthanc", free_port(), free_port(), modalities)
    o.start()
    for f in corpus_files:
        o.upload(f)
    return o


def backfill(remote: str, **kw) -> dict:
    out = StringIO()
    call_command("backfill", remote=remote, json=True, stdout=out, **DATES, **kw)
    return json.loads(out.getvalue())


def assert_exactly_once(held: list[dict]) -> None:
    objs = list(DoseObject.objects.select_related("study"))
    # each instance Orthanc holds arrived exactly once (the corpus re-uses one SOP Instance UID in two studies)
    assert Counter(o.sop_instance_uid for o in objs) == Counter(h["SOPInstanceUID"] for h in held)
    not_ingested = {o.sop_instance_uid: (o.status, o.quarantine_reason) for o in objs
                    if o.status != DoseObject.STATUS_INGESTED}
    assert not_ingested == {}
    # every object is filed under a study Orthanc holds it in; a report re-filed under another Study Instance UID
    # (the same SOP Instance and Irradiation Event UIDs: the corpus's adjusted-date copy) is one procedure and
    # stays with the study it was first filed under (issue 18)
    studies_of: dict[str, set[str]] = {}
    for h in held:
        studies_of.setdefault(h["SOPInstanceUID"], set()).add(h["StudyInstanceUID"])
    for o in objs:
        assert o.study.study_instance_uid in studies_of[o.sop_instance_uid], o.sop_instance_uid
    refiled = {uid for uid, studies in studies_of.items() if len(studies) > 1}
    for uid in refiled:  # counted once: both copies in one study
        assert len({o.study_id for o in objs if o.sop_instance_uid == uid}) == 1, uid


@pytest.fixture
def orthanc_for_get(tmp_path, corpus_files, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.SPOOL_DIR = tmp_path / "spool"
    settings.SPOOL_MIN_FREE_BYTES = 0
    o = start_orthanc(tmp_path, corpus_files, {"backfill": ["BACKFILL", "127.0.0.1", 104]})
    yield o
    o.stop()


@pytest.mark.django_db(transaction=True)
def test_backfill_by_c_get_exactly_once_resumable_and_second_run_imports_nothing(orthanc_for_get, corpus_files):
    o = orthanc_for_get
    held = o.held_instances()
    assert len(held) >= len(corpus_files) - 1, o.logs()
    remote = f"ORTHANC@127.0.0.1:{o.dicom_port}"

    # an interrupted run (killed after 4 retrievals) ...
    calls = {"n": 0}

    def progress(msg):
        if msg.startswith("[") and "retrieved" in msg:
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt

    job = Backfill(parse_remote(remote), parse_date(DATES["date_from"]), parse_date(DATES["date_to"]),
                   rate=200, progress=progress)
    with pytest.raises(KeyboardInterrupt):
        job.run()
    assert DoseObject.objects.count() >= 4
    run = BackfillRun.objects.get()
    assert run.status == BackfillRun.STATUS_RUNNING and run.query_done

    # ... is resumed by running the same command again
    first = backfill(remote, rate="200/s")
    assert first["run"] == run.pk and first["resumed"] is True
    assert first["found"] == len(held)
    assert first["failed"] == 0, first
    assert first["retrieved"] + first["already_present"] == len(held)
    assert_exactly_once(held)
    assert DoseObject.objects.filter(calling_ae="BACKFILL").count() == len(held)

    before = registry_stats()
    paths = set(DoseObject.objects.values_list("path", flat=True))
    second = backfill(remote)
    assert second["run"] != run.pk and second["resumed"] is False
    assert second == {**second, "found": len(held), "already_present": len(held), "retrieved": 0, "failed": 0}
    assert registry_stats() == before
    assert set(DoseObject.objects.values_list("path", flat=True)) == paths
    assert BackfillItem.objects.filter(run_id=second["run"], status=BackfillItem.PRESENT).count() == len(held)


@pytest.mark.django_db(transaction=True)
def test_backfill_date_and_modality_filters(orthanc_for_get, corpus_files):
    o = orthanc_for_get
    held = o.held_instances()
    remote = f"ORTHANC@127.0.0.1:{o.dicom_port}"
    # 2018-01-05: the three cumulative Somatom Confidence CT RDSRs of one study
    out = StringIO()
    call_command("backfill", remote=remote, date_from="2018-01-05", date_to="2018-01-05", json=True, stdout=out)
    summary = json.loads(out.getvalue())
    expected = [h for h in held if h["StudyDate"] == "20180105"]
    assert summary["found"] == summary["retrieved"] == len(expected) == 3
    # the DX image header study has no dose SR: its image is taken (header-only capture)
    out = StringIO()
    call_command("backfill", remote=remote, date_from="2014-09-30", date_to="2014-09-30", modality=["DX"],
                 json=True, stdout=out)
    summary = json.loads(out.getvalue())
    assert summary["retrieved"] == 1
    item = BackfillItem.objects.get(run_id=summary["run"])
    assert item.kind == "image" and item.sop_class_uid == "1.2.840.10008.5.1.4.1.1.1.1.1"
    assert DoseObject.objects.get(sop_instance_uid=item.sop_instance_uid).status == DoseObject.STATUS_INGESTED


def test_backfill_by_c_move_to_the_real_listener_and_worker(stack, tmp_path, corpus_files):
    stack.env["DICOM_ALLOWED_CALLING_AES"] = "ORTHANC,MODALITY1"
    stack.start_worker()
    stack.start_listener()
    o = start_orthanc(tmp_path, corpus_files, {
        "backfill": ["BACKFILL", "127.0.0.1", 104],
        "dosereg": ["DOSEREG", "127.0.0.1", stack.port],
    })
    try:
        held = o.held_instances()
        remote = f"ORTHANC@127.0.0.1:{o.dicom_port}"
        first = backfill(remote, method="move", move_destination="DOSEREG")
        assert first["failed"] == 0, (first, o.logs(), stack.logs())
        assert first["found"] == len(held)
        assert first["retrieved"] + first["already_present"] == len(held)

        def settled():
            n = DoseObject.objects.exclude(status=DoseObject.STATUS_RECEIVED).count()
            return n >= len(held)
        assert wait_until(settled, timeout=120), stack.logs()
        assert_exactly_once(held)
        assert set(DoseObject.objects.values_list("calling_ae", flat=True)) == {"ORTHANC"}

        before = registry_stats()
        second = backfill(remote, method="move", move_destination="DOSEREG")
        assert (second["retrieved"], second["already_present"], second["failed"]) == (0, len(held), 0)
        wait_until(lambda: False, timeout=2)
        assert registry_stats() == before
    finally:
        o.stop()
