"""One failing row must not stop a periodic loop: record the failure of one step and go on."""
from __future__ import annotations

import logging
import traceback as tb

log = logging.getLogger(__name__)


def step_failure_record(step: str, key: object, exc: BaseException) -> None:
    """Log the failure of one step of a loop (``step`` for ``key``: a bucket, a patient, a study) and keep a
    TaskFailure row for it (visible in the admin next to failed tasks). Never raises."""
    log.error("%s failed for %s: %s: %s", step, key, type(exc).__name__, exc)
    try:
        from .models import TaskFailure

        TaskFailure.objects.create(
            task_name=step[:200], task_id=str(key)[:64], exception_type=type(exc).__name__[:200],
            message=str(exc)[:4000], traceback="".join(tb.format_exception(exc))[-20000:], args=repr(key)[:4000],
        )
    except Exception as record_exc:  # the database itself is down: the log line is all we can keep
        log.warning("could not record the failure of %s for %s: %s", step, key, record_exc)
