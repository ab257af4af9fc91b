"""The ingest pipeline, top to bottom. One SOP Instance UID, from the listener to the alert e-mail:

    dicom_listener.server.handle_store                      stores the object durably, registers its row, answers
      └─ dispatch(id): registry.receiving.enqueue_ingest     → Celery task "dosereg.ingest_object" (with a broker)
                       pipeline.worker.InProcessWorker.submit → the same task function in a thread (embedded default)
    pipeline.tasks.ingest_object_task(id)                   thin: retries named transient database errors only
      └─ ingest_object(id)
           ├─ registry.receiving.dose_object_delivery_start  counts deliveries; quarantines past INGEST_MAX_DELIVERIES
           ├─ registry.ingest.dose_object_ingest             parse, then one transaction (study totals included)
           ├─ patient_corrected_notices                       a corrected report moved a study: notices for its alerts
           └─ follow_up(changes, inline=INGEST_DERIVED_INLINE)
                ├─ 1 exposure:  exposure.recompute.patient_exposure_recompute(patient_id)    per affected patient
                │                 → alerts → notifications.services.notification_enqueue_many
                │                 → after its commit: notifications.tasks.send_notifications_task → SMTP
                ├─ 2 staff:     staff.services.staff_studies_sync(study_ids)       } queued behind the ingests
                ├─ 3 protocols: protocols.services.studies_mark_dirty(study_ids)   } while ingests wait
                └─ 4 skin dose: pipeline.tasks.skin_dose_studies_task(study_ids)  always queued, on the "skin" queue
                                  ├─ skin_dose_wait_for_ingest()  a skin-only worker waits while ingests wait
                                  └─ skin_dose_studies(study_ids)
                                       ├─ skindose.services.studies_skin_dose_compute → PySkinDose → StudySkinDose
                                       └─ exposure.recompute.patient_exposure_recompute(patient_id) the PSD rules
                                            (the stored PSD is one of its inputs) → the procedure's RSO case

Each step is idempotent and runs as a unit: inline (in the worker that ingested, after its commit) or queued as
its own named task. A step that fails inline is queued as that task; the steps after it still run. Patient
merge/unmerge (``patient_merge``, ``patient_unmerge``), device merge/split (``device_merge``, ``device_split``),
reprocessing (``objects_reprocess``) and file import
(``file_import``) end in the same ``follow_up``.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction

from dosereg.cases import corrections as patient_corrections
from dosereg.exposure import identity
from dosereg.exposure import selectors as exposure_selectors
from dosereg.exposure import recompute as exposure
from dosereg.ops.failures import step_failure_record
from dosereg.ops.health import broker_queue_length
from dosereg.protocols import services as protocols
from dosereg.protocols.tasks import mark_studies_dirty_task
from dosereg.registry import devices as registry_devices
from dosereg.registry import ingest as registry_ingest
from dosereg.registry import receiving as registry_receiving
from dosereg.registry import reprocess as registry_reprocess
from dosereg.registry.changes import StudyChanges, study_changes_of
from dosereg.registry.models import DoseObject, Study
from dosereg.skindose import selectors as skindose_selectors
from dosereg.skindose import services as skindose
from dosereg.staff import services as staff
from dosereg.staff.tasks import staff_sync_studies_task

from .tasks import skin_dose_studies_task

log = logging.getLogger(__name__)

EXPOSURE, STAFF, PROTOCOLS, SKIN = "exposure", "staff", "protocols", "skin"


@dataclass
class FollowUp:
    """What ``follow_up`` did: each step with its arguments, run here or queued as its task."""

    ran: list[tuple[str, tuple]] = field(default_factory=list)
    queued: list[tuple[str, tuple]] = field(default_factory=list)


# ---------------------------------------------------------------------------
# ingest
# ---------------------------------------------------------------------------
def ingest_object(dose_object_id: int, *, count_delivery: bool = False, force: bool = False) -> DoseObject:
    """Ingest one registered object, then its follow-up steps.

    ``count_delivery`` (the ingest task): count this delivery first; an object delivered too often without ever
    finishing is quarantined here instead of being parsed again. An object found already ingested (its task
    delivered again after the worker died between the ingest's commit and the follow-up) gets its follow-up
    again: every step is idempotent."""
    row = None
    if count_delivery:
        go_on, row = registry_receiving.dose_object_delivery_start(dose_object_id=dose_object_id,
                                                                   max_deliveries=settings.INGEST_MAX_DELIVERIES)
        if not go_on:
            return DoseObject.objects.get(pk=dose_object_id)  # quarantined: delivered too often without finishing
    try:
        obj = registry_ingest.dose_object_ingest(dose_object_id=dose_object_id, force=force, row=row)
    except (OperationalError, InterfaceError):  # the task retries these: the worker was not lost
        if count_delivery:
            registry_receiving.dose_object_delivery_uncount(dose_object_id=dose_object_id)
        raise
    if obj.status != DoseObject.STATUS_INGESTED:
        return obj
    changes = getattr(obj, "changes", None) or study_changes_of(obj)
    if changes.corrections:
        patient_corrected_notices(obj.pk, changes.corrections)
    follow_up(changes, inline=settings.INGEST_DERIVED_INLINE)
    return obj


def patient_corrected_notices(dose_object_id: int, corrections) -> None:
    """A corrected report moved studies to another patient: a "patient corrected" notice for every alert of those
    studies (their e-mails named the former patient), before the recompute moves or withdraws the alerts. The
    correction is committed already: a failure here is logged, never raised."""
    try:
        for study_id, former, new in corrections:
            patient_corrections.alerts_notify_patient_corrected(study_id=study_id, former_patient_id=former,
                                                                new_patient_id=new, dose_object_id=dose_object_id)
    except Exception:
        log.exception("could not send the patient-corrected notices of dose object %s", dose_object_id)


def file_import(*, path: Path, spool, inline: bool = True) -> tuple[DoseObject, str]:
    """Import one file as the listener would (spool, register); ``inline``: ingest it now, with its follow-up,
    else queue its ingest."""
    obj, outcome = registry_receiving.dose_file_register(path=path, spool=spool, enqueue=not inline)
    if inline and obj.status == DoseObject.STATUS_RECEIVED:
        obj = ingest_object(obj.pk)
    return obj, outcome


def objects_reprocess(*, queryset=None, inline: bool = False) -> int:
    """Re-extract stored originals (after a parser or configuration change): here, each followed by its
    follow-up steps, or queued (``registry.reprocess.dose_objects_reprocess``)."""
    if not inline:
        return registry_reprocess.dose_objects_reprocess(queryset=queryset)
    ids = registry_reprocess.dose_objects_mark_for_reprocess(queryset=queryset)
    for pk in ids:
        ingest_object(pk, force=True)
    return len(ids)


# ---------------------------------------------------------------------------
# identity
# ---------------------------------------------------------------------------
def patient_merge(*, source_id: int, target_id: int, user=None, note: str = ""):
    """Merge ``source`` into ``target`` (RIS merge), then recompute both through the same steps as an ingest."""
    change = identity.patient_merge(source_id=source_id, target_id=target_id, user=user, note=note)
    follow_up(StudyChanges(change.study_ids, change.patient_ids), inline=False)
    return change.merge


def patient_unmerge(*, patient_id: int, user=None, reingest: bool = True):
    """Undo a merge: re-ingest what arrived during it (each with its follow-up), then follow up the patients."""
    change = identity.patient_unmerge(patient_id=patient_id, user=user, reingest=reingest)
    if not change.patient_ids:  # it was not merged
        return None
    if change.reingest_object_ids:
        n = objects_reprocess(queryset=DoseObject.objects.filter(pk__in=change.reingest_object_ids), inline=True)
        log.info("unmerge of patient %s: re-ingested %s objects received during the merge", patient_id, n)
    follow_up(StudyChanges(change.study_ids, change.patient_ids), inline=False)
    return change.merge


def device_merge(*, source_id: int, target_id: int):
    """Merge two devices (one unit seen twice), then refresh what depends on the device of the moved studies
    (protocol summaries of both devices' buckets, exposure windows and device-scoped alert rules)."""
    change = registry_devices.device_merge(source_id=source_id, target_id=target_id)
    follow_up(StudyChanges(change.study_ids, change.patient_ids), inline=False)
    return change


def device_split(*, device_id: int, identity_ids: list[int], display_name: str = ""):
    """Split the studies of chosen received identities off to a new device, then the same follow-up."""
    change = registry_devices.device_split(device_id=device_id, identity_ids=identity_ids, display_name=display_name)
    follow_up(StudyChanges(change.study_ids, change.patient_ids), inline=False)
    return change


# ---------------------------------------------------------------------------
# the follow-up steps
# ---------------------------------------------------------------------------
def follow_up(changes: StudyChanges, *, inline: bool) -> FollowUp:
    """Steps 1-4 for what an ingest (or a merge) changed, in this order. ``inline``: run each here and queue only
    a step that fails; else queue each as its own task (the setting INGEST_DERIVED_INLINE chooses for ingests).
    The skin-dose step is always queued (its own queue: seconds of computation per procedure)."""
    done = FollowUp()
    # 1 cumulative exposure and alerts (their e-mails are queued when the recompute commits): first, the most urgent
    for patient_id in exposure_selectors.patients_to_recompute(
            study_ids=changes.study_ids, patient_ids=changes.patient_ids, new_study_ids=changes.new_study_ids):
        _step(done, EXPOSURE, (patient_id,), inline=inline,
              run=partial(exposure.patient_exposure_recompute, patient_id=patient_id),
              queue=partial(exposure.enqueue_recompute, patient_id))
    # 2 staff participation: link the report's named people to staff, recompute their doses and staff alerts
    study_ids = staff.studies_to_sync(study_ids=changes.study_ids, new_study_ids=changes.new_study_ids,
                                      named_study_ids=changes.named_study_ids)
    # steps 2 and 3 wait while ingests wait (a burst): queued behind them, so that this worker's next ingest, and
    # the procedure alerts it raises, come first (``_ingest_backlog``)
    later = inline and (bool(study_ids) or bool(changes.study_ids)) and _ingest_backlog()
    priority = settings.DEFERRED_STEP_PRIORITY if later else None
    if study_ids:
        _step(done, STAFF, (study_ids,), inline=inline and not later,
              run=lambda: staff.staff_studies_sync(study_ids=study_ids),
              queue=lambda: _apply(staff_sync_studies_task, study_ids, priority=priority))
    # 3 protocol summaries: mark the changed studies' buckets dirty (the refresh task rebuilds them)
    if changes.study_ids:
        ids, new = sorted(changes.study_ids), sorted(changes.new_study_ids)
        _step(done, PROTOCOLS, (ids,), inline=inline and not later,
              run=lambda: protocols.studies_mark_dirty(ids, new_study_ids=new),
              queue=lambda: _apply(mark_studies_dirty_task, ids, new, priority=priority))
    # 4 peak skin dose of fluoroscopically guided studies: always its own task on the "skin" queue (seconds per
    # procedure; never inline in the ingest worker)
    if changes.study_ids and settings.SKINDOSE_ENABLED:
        skin_ids = skindose_selectors.studies_with_kar(changes.study_ids, known=changes.new_study_facts)
        if skin_ids:
            _step(done, SKIN, (skin_ids,), inline=False,
                  run=lambda: skin_dose_studies(skin_ids),
                  queue=lambda: _apply(skin_dose_studies_task, skin_ids))
    return done


def skin_dose_wait_for_ingest(*, sleep: Callable[[float], None] = time.sleep,
                              clock: Callable[[], float] = time.monotonic) -> float:
    """Step 4 yields to the ingest (settings.SKIN_YIELD_MAX_S, SKIN_YIELD_POLL_S): while ingest tasks wait in the
    broker, wait (polling the queue's length) instead of computing, for at most SKIN_YIELD_MAX_S; returns the
    seconds waited. Never waits without a broker (tasks in-process) or when the broker cannot be asked."""
    # the task's message stays unacknowledged while it waits (acks_late): wait well inside the broker's visibility
    # timeout, or Redis would hand the same task to a second worker
    visibility_s = (settings.CELERY_BROKER_TRANSPORT_OPTIONS or {}).get("visibility_timeout", 3600)
    limit = min(settings.SKIN_YIELD_MAX_S, float(visibility_s) / 2)  # type: ignore[arg-type]
    if not settings.REDIS_URL or settings.CELERY_TASK_ALWAYS_EAGER or limit <= 0:
        return 0.0
    start = clock()
    while clock() - start < limit:
        try:
            if broker_queue_length(_broker_client()) == 0:
                break
        except Exception as exc:  # the broker's state is advice here, never a reason to fail or to wait
            log.warning("skin dose: could not read the ingest queue (%s); computing now", exc)
            break
        sleep(settings.SKIN_YIELD_POLL_S)
    return clock() - start


_BROKER_CLIENT: dict = {}  # REDIS_URL -> client, one per process


def _broker_client():
    url = settings.REDIS_URL
    if url not in _BROKER_CLIENT:
        import redis

        _BROKER_CLIENT[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return _BROKER_CLIENT[url]


def skin_dose_studies(study_ids: list[int]) -> int:
    """Step 4, run by the skin task on its own queue: compute and store each study's peak skin dose, then run step 1
    (cumulative exposure and alerts) again for their patients, which evaluates the PSD rules beside the Ka,r rules:
    a PSD level opens or escalates the procedure's RSO case (the same case as its Ka,r levels). Idempotent: a PSD
    computed again (reprocessing) re-evaluates nothing when equal, and alerts and case e-mails are never duplicated
    (one alert per patient, rule, level and procedure; one e-mail per case and level class)."""
    ids = sorted(set(study_ids))
    before = skindose_selectors.studies_psd(ids)
    n = skindose.studies_skin_dose_compute(study_ids=ids)
    after = skindose_selectors.studies_psd(ids)
    changed = [sid for sid in ids if before.get(sid) != after.get(sid)]  # an equal PSD has nothing to re-evaluate
    patients = set(Study.objects.filter(pk__in=changed, patient_id__isnull=False).values_list("patient_id", flat=True))
    done = FollowUp()
    for patient_id in exposure_selectors.patients_to_recompute(study_ids=changed, patient_ids=patients,
                                                               new_study_ids=()) if changed else ():
        _step(done, EXPOSURE, (patient_id,), inline=True,
              run=partial(exposure.patient_exposure_recompute, patient_id=patient_id),
              queue=partial(exposure.enqueue_recompute, patient_id))
    return n


def _step(done: FollowUp, name: str, args: tuple, *, inline: bool, run: Callable[[], object],
          queue: Callable[[], object]) -> None:
    if inline:
        try:
            # inside a caller's transaction (an import in a test, a command) a failed step must not break it
            with transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext():
                run()
            done.ran.append((name, args))
            return
        except Exception as exc:
            # one patient's (or study's) failure is recorded (ops failures) and must not stop the others: the
            # loop goes on, and the step is queued as its own task (retried there)
            log.exception("pipeline step %s %s failed; queued as its own task", name, args)
            step_failure_record(f"pipeline {name}", args[0] if len(args) == 1 else args, exc)
    transaction.on_commit(queue)  # a worker must see what the caller's transaction wrote
    done.queued.append((name, args))


def _apply(task, *args, priority: int | None = None) -> None:
    try:
        if priority is None:
            task.apply_async(args=list(args))
        else:
            task.apply_async(args=list(args), priority=priority)
    except Exception as exc:  # broker down: the periodic refresh tasks catch up; never break the ingest
        log.error("could not queue %s%s: %s", task.name, args, exc)


def _ingest_backlog() -> bool:
    """Whether ingest tasks wait in the broker (settings.INGEST_DEFER_UNDER_BACKLOG; only with a broker): the lists
    served before or with the ingest's priority, not the deferred steps' own (else one deferral would keep every
    later one deferred). A broker that cannot be asked means no backlog: the steps run here, as without one."""
    if not settings.INGEST_DEFER_UNDER_BACKLOG or not settings.REDIS_URL or settings.CELERY_TASK_ALWAYS_EAGER:
        return False
    try:
        return broker_queue_length(_broker_client(), max_priority=settings.INGEST_TASK_PRIORITY) > 0
    except Exception as exc:
        log.warning("could not read the ingest queue (%s); follow-up steps run inline", exc)
        return False
