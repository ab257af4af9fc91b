"""Celery application. Without REDIS_URL tasks run in-process (eager)."""
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dosereg.settings")

app = Celery("dosereg")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def idle_cpu_class(**_kwargs) -> None:
    """WORKER_SCHED_IDLE: this worker (its main process, and the pool processes it forks, which inherit the class)
    runs only on CPU time nothing else wants (settings.WORKER_SCHED_IDLE)."""
    from django.conf import settings

    if settings.WORKER_SCHED_IDLE and hasattr(os, "SCHED_IDLE"):
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
