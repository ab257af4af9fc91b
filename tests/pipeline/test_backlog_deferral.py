"""While ingests wait in the broker (a burst), the ingest worker runs the exposure step (the procedure alert) inline
and queues the staff and protocol-summary steps behind the waiting ingests (issue 14): the next ingest, and its
alert e-mail, are not held up by them. Against the real Redis queue lengths; the queued tasks then do the work."""
from __future__ import annotations

import pytest

from dosereg.pipeline import flow
from dosereg.pipeline.tasks import ingest_object_task
from dosereg.protocols.tasks import mark_studies_dirty_task
from dosereg.registry.models import DoseObject, Study
from dosereg.staff.tasks import staff_sync_studies_task
from tests.pipeline.test_pipeline import EVERYTHING, NOTHING, billy, effects, named_rdsr, register, spool  # noqa: F401
from tests.pipeline.test_skin_yield import broker  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    """The staff and protocol tasks' apply_async calls (args, priority), instead of sending them."""
    calls: list[tuple[str, list, int | None]] = []
    monkeypatch.setattr(staff_sync_studies_task, "apply_async",
                        lambda args, priority=None: calls.append(("staff", args, priority)))
    monkeypatch.setattr(mark_studies_dirty_task, "apply_async",
                        lambda args, priority=None: calls.append(("protocols", args, priority)))
    return calls


def _ingest(obj, capture):
    with capture(execute=True):
        assert ingest_object_task.apply(args=[obj.pk]).get() == DoseObject.STATUS_INGESTED
    return Study.objects.get(pk=DoseObject.objects.get(pk=obj.pk).study_id)


def test_while_ingests_wait_steps_2_and_3_are_queued_behind_them(broker, queued, tmp_path, spool, billy, settings,  # noqa: F811
                                                                 django_capture_on_commit_callbacks):
    client, prefix = broker
    settings.INGEST_DERIVED_INLINE = True
    settings.INGEST_DEFER_UNDER_BACKLOG = True
    client.rpush(f"{prefix}dosereg:{settings.INGEST_TASK_PRIORITY}", b"an ingest waiting")
    obj = register(named_rdsr(tmp_path, patient_id="DEFER-1"), spool)
    study = _ingest(obj, django_capture_on_commit_callbacks)
    # the exposure step ran here: windows and the procedure's Ka,r alert exist at once
    assert effects(obj, billy) == {**NOTHING, "windows": True, "alert": True}
    # steps 2 and 3 are queued at the deferred priority, served after the ingests' (0 first)
    prio = settings.DEFERRED_STEP_PRIORITY
    assert prio > settings.INGEST_TASK_PRIORITY
    assert queued == [("staff", [[study.pk]], prio), ("protocols", [[study.pk], [study.pk]], prio)]
    # ... and, run as a worker runs them later, they do the steps' work
    with django_capture_on_commit_callbacks(execute=True):
        staff_sync_studies_task([study.pk])
        mark_studies_dirty_task([study.pk], [study.pk])
    assert effects(obj, billy) == EVERYTHING


@pytest.mark.parametrize("defer, waiting", [
    # deferred steps waiting (their own, later priority) are no backlog of ingests: else one deferral would make
    # every later follow-up deferred too
    (True, "DEFERRED_STEP_PRIORITY"),
    # the setting off: ingests waiting, and still every step inline
    (False, "INGEST_TASK_PRIORITY"),
])
def test_all_steps_run_inline_without_ingests_waiting_or_with_the_deferral_off(
        defer, waiting, broker, queued, tmp_path, spool, billy, settings, django_capture_on_commit_callbacks):  # noqa: F811
    client, prefix = broker
    settings.INGEST_DERIVED_INLINE = True
    settings.INGEST_DEFER_UNDER_BACKLOG = defer
    client.rpush(f"{prefix}dosereg:{getattr(settings, waiting)}", b"a task waiting")
    obj = register(named_rdsr(tmp_path, patient_id=f"DEFER-{waiting}"), spool)
    _ingest(obj, django_capture_on_commit_callbacks)
    assert queued == [] and effects(obj, billy) == EVERYTHING


def test_a_broker_that_cannot_be_asked_means_no_deferral(settings, monkeypatch):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.INGEST_DEFER_UNDER_BACKLOG = True
    flow._BROKER_CLIENT.clear()
    try:
        assert flow._ingest_backlog() is False
    finally:
        flow._BROKER_CLIENT.clear()
