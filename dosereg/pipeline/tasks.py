"""The pipeline's Celery entry points: thin, named, retrying only named transient errors.

``dosereg.ingest_object`` (the ingest and its follow-up) and ``dosereg.skin_dose_studies`` (step 4, on its own
queue "skin": the peak skin dose, then the PSD rules through the same exposure step).

The follow-up steps queue their own tasks where their apps define them: ``dosereg.recompute_patient_exposure``
(exposure), ``dosereg.staff_sync_studies`` (staff), ``dosereg.protocols_mark_studies_dirty`` (protocols)."""
from __future__ import annotations

from celery import shared_task
from celery.signals import worker_init
from django.db import InterfaceError, OperationalError

from dosereg.registry.receiving import INGEST_TASK


@shared_task(
    name=INGEST_TASK,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=20,
    acks_late=True,
)
def ingest_object_task(dose_object_id: int) -> str:
    from . import flow

    return flow.ingest_object(dose_object_id, count_delivery=True).status


SKIN_TASK = "dosereg.skin_dose_studies"  # routed to the "skin" queue (settings.CELERY_TASK_ROUTES)


@shared_task(name=SKIN_TASK, bind=True, autoretry_for=(OperationalError, InterfaceError), retry_backoff=True,
             max_retries=5, acks_late=True)
def skin_dose_studies_task(self, study_ids: list[int]) -> int:
    """Step 4. A worker that takes only the skin queue (compose: skin-worker) first waits while ingest tasks wait
    in the broker, up to SKIN_YIELD_MAX_S (flow.skin_dose_wait_for_ingest); a worker that also takes the ingest
    queue (the demo's one worker) computes at once, since waiting would hold one of its ingest processes."""
    from django.conf import settings

    from . import flow

    # the default queue holds the ingest and every follow-up task but the skin dose
    if not _consumes(self.app, settings.CELERY_TASK_DEFAULT_QUEUE):
        flow.skin_dose_wait_for_ingest()
    return flow.skin_dose_studies(study_ids)


def _consumes(app, queue: str) -> bool:
    """Whether this worker takes ``queue`` (its -Q list); True when unknown (no worker: eager, a shell)."""
    consume_from = getattr(app.amqp.queues, "consume_from", None)
    return not consume_from or queue in consume_from


@worker_init.connect
def preload_task_modules(**_kwargs) -> None:
    """Import what the tasks import lazily once, in the worker's main process before its pool forks (this module is
    imported with the worker's tasks, before ``worker_init``): otherwise every pool process imports the ingest's
    modules, pydicom and its code dictionaries on its first object (0.3-0.5 s of CPU each, paid again by each
    replacement process)."""
    import pydicom  # noqa: F401 - imported by the reader's functions, not at module level

    from dosereg.rdsr.codes import _pyd_map

    from . import flow  # noqa: F401 - the ingest and every follow-up step

    _pyd_map()
