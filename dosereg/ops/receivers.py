"""Celery task failures become TaskFailure rows, visible in the Django admin."""
from __future__ import annotations

import logging
import os
import socket
import traceback as tb

from celery.signals import task_failure, task_prerun

log = logging.getLogger(__name__)


@task_prerun.connect(dispatch_uid="dosereg.ops.refresh_db_connections")
def refresh_db_connections(sender=None, **kwargs) -> None:
    """Workers keep their database connection between tasks (CELERY_DB_REUSE_MAX) but, like a Django
    request, drop one that broke (PostgreSQL restarted) or outlived DB_CONN_MAX_AGE before each task."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


@task_failure.connect(dispatch_uid="dosereg.ops.task_failure")
def record_task_failure(sender=None, task_id=None, exception=None, args=None, kwargs=None, traceback=None,
                        einfo=None, **extra) -> None:
    from django.db import close_old_connections

    from .models import TaskFailure

    name = getattr(sender, "name", None) or str(sender)
    try:
        text = str(einfo) if einfo is not None else "".join(tb.format_exception(exception)) if exception else ""
        host = getattr(getattr(sender, "request", None), "hostname", None) or socket.gethostname()
        close_old_connections()
        TaskFailure.objects.create(
            task_name=name[:200], task_id=str(task_id or "")[:64],
            exception_type=type(exception).__name__[:200] if exception is not None else "",
            message=str(exception)[:4000], traceback=text[-20000:],
            args=repr((args, kwargs))[:4000], hostname=str(host)[:200],
        )
    except Exception as exc:  # never let bookkeeping hide the real failure (e.g. the database is down)
        log.warning("could not record failure of task %s %s: %s", name, task_id, exc)


if os.environ.get("LOG_FORMAT") == "json":
    from celery.signals import setup_logging

    @setup_logging.connect(dispatch_uid="dosereg.ops.keep_django_logging", weak=False)
    def keep_django_logging(**kwargs) -> None:
        """LOG_FORMAT=json: Celery keeps Django's LOGGING (the JSON formatter) instead of its own text format."""
        from logging.config import dictConfig

        from django.conf import settings

        dictConfig(settings.LOGGING)
