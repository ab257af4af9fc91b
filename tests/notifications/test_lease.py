"""Issue #18: an e-mail whose worker died mid-delivery went out 9.5 minutes late (the broker's visibility
timeout). Now each delivery is claimed with a short lease; beat re-queues expired leases every 30 s, so the
e-mail goes out within a minute, exactly once. The first test kills a real delivering process (kill -9) while
the real SMTP server (aiosmtpd) holds its DATA, against the real PostgreSQL test database."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone

from dosereg.notifications.models import Notification, NotificationAttempt
from dosereg.notifications.services import (
    notification_claim,
    notification_enqueue,
    notifications_requeue_expired,
)
from tests.conftest import REPO
from tests.notifications.smtp import RecordingHandler, free_port


class HangingHandler(RecordingHandler):
    """Holds the first DATA (the worker is "sending" when it dies); accepts later ones."""

    def __init__(self) -> None:
        super().__init__()
        self.hang_next = 1
        self.data_started = threading.Event()

    async def handle_DATA(self, server, session, envelope):
        if self.hang_next:
            self.hang_next -= 1
            self.data_started.set()
            await asyncio.sleep(20)
            return "451 4.3.0 too late"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def hanging_smtp(settings):
    from aiosmtpd.controller import Controller

    handler = HangingHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 30
    handler.port = port
    try:
        yield handler
    finally:
        controller.stop()


def _db_url() -> str:
    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)
def test_a_delivery_killed_mid_send_is_resent_after_its_lease_exactly_once(hanging_smtp, settings):
    settings.NOTIFICATION_LEASE_S = 2
    n = Notification.objects.create(dedupe_key="lease:1", recipient="rso@x.test", subject="Alert", body="3.6 Gy")
    env = dict(os.environ, DATABASE_URL=_db_url(), DOSEREG_PRODUCTION="false", EMAIL_HOST="127.0.0.1",
               EMAIL_PORT=str(hanging_smtp.port), EMAIL_TIMEOUT="30", NOTIFICATION_LEASE_S="2",
               DJANGO_SETTINGS_MODULE="dosereg.settings")
    env.pop("REDIS_URL", None)
    code = ("import django; django.setup(); from dosereg.notifications.services import notification_deliver; "
            f"print(notification_deliver(notification_id={n.pk}))")
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert hanging_smtp.data_started.wait(60), worker.communicate(timeout=5)
        killed_at = time.monotonic()
        os.kill(worker.pid, signal.SIGKILL)  # the worker dies while the SMTP server holds its message
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    n.refresh_from_db()
    assert n.status == Notification.STATUS_PENDING and n.attempt_count == 1 and n.lease_until is not None
    assert hanging_smtp.messages == []
    assert notifications_requeue_expired() == 0  # the lease has not expired yet: nothing is re-sent early
    while timezone.now() <= n.lease_until:
        time.sleep(0.2)
    # what beat runs every NOTIFICATION_LEASE_SWEEP_S; the re-queued task runs in-process (no broker in tests)
    assert notifications_requeue_expired() == 1
    assert time.monotonic() - killed_at < 60
    n.refresh_from_db()
    assert n.status == Notification.STATUS_SENT and n.lease_until is None and n.attempt_count == 2
    assert [m["Subject"] for m in hanging_smtp.messages] == ["Alert"]
    assert list(n.attempts.values_list("outcome", flat=True)) == ["interrupted", "sent"]
    # later sweeps (and the dead worker's original broker message, redelivered) do not send it again
    assert notifications_requeue_expired(now=timezone.now() + timedelta(hours=1)) == 0
    from dosereg.notifications.services import notification_deliver

    assert notification_deliver(notification_id=n.pk) == "skipped"
    assert len(hanging_smtp.messages) == 1


@pytest.mark.django_db
def test_a_claimed_but_never_finished_delivery_is_resent_once(smtp_server, settings, django_capture_on_commit_callbacks):
    settings.NOTIFICATION_LEASE_S = 20
    with django_capture_on_commit_callbacks(execute=False):  # enqueued; the task is "lost" with its worker
        (n,) = notification_enqueue(dedupe_key="lease:2", recipients=["a@x.test"], subject="S", body="B")
    assert notification_claim(n.pk) is not None  # claimed; the worker then dies before sending
    n.refresh_from_db()
    assert n.lease_until > timezone.now() + timedelta(seconds=15)
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications_requeue_expired() == 0
    assert smtp_server.messages == []
    later = n.lease_until + timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications_requeue_expired(now=later) == 1
        assert notifications_requeue_expired(now=later) == 0  # the next sweep does not queue it twice
    assert len(smtp_server.messages) == 1
    n.refresh_from_db()
    assert n.status == Notification.STATUS_SENT
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications_requeue_expired(now=later + timedelta(minutes=5)) == 0
    assert len(smtp_server.messages) == 1


@pytest.mark.django_db
def test_a_retry_waiting_for_its_backoff_is_not_requeued_early(smtp_server, settings, django_capture_on_commit_callbacks):
    from dosereg.notifications.services import RETRY, notification_deliver

    smtp_server.fail_next = ["451 4.3.0 try later"]
    with django_capture_on_commit_callbacks(execute=False):
        (n,) = notification_enqueue(dedupe_key="lease:3", recipients=["a@x.test"], subject="S", body="B")
    assert notification_deliver(notification_id=n.pk, retry_in_s=300) == RETRY
    n.refresh_from_db()
    assert n.lease_until > timezone.now() + timedelta(seconds=300)  # the back-off wait is covered by the lease
    assert notifications_requeue_expired(now=timezone.now() + timedelta(seconds=120)) == 0
    with django_capture_on_commit_callbacks(execute=True):  # the retry task was lost: picked up after the lease
        assert notifications_requeue_expired(now=n.lease_until + timedelta(seconds=1)) == 1
    n.refresh_from_db()
    assert n.status == Notification.STATUS_SENT and len(smtp_server.messages) == 1


@pytest.mark.django_db
def test_a_delivery_that_keeps_dying_is_given_up(settings, django_capture_on_commit_callbacks):
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    with django_capture_on_commit_callbacks(execute=False):
        (n,) = notification_enqueue(dedupe_key="lease:4", recipients=["a@x.test"], subject="S", body="B")
    now = timezone.now()
    for i in range(3):
        assert notification_claim(n.pk) is not None
        now += timedelta(minutes=5)
        with django_capture_on_commit_callbacks(execute=False):
            notifications_requeue_expired(now=now)
    n.refresh_from_db()
    assert n.status == Notification.STATUS_FAILED and n.attempt_count == 3
    assert NotificationAttempt.objects.filter(notification=n, outcome="interrupted").count() == 3


def test_beat_requeues_expired_leases_within_a_minute():
    entry = django_settings.CELERY_BEAT_SCHEDULE["requeue-notification-leases"]
    assert entry["task"] == "dosereg.requeue_notification_leases"
    period = entry["schedule"].total_seconds()
    assert period <= 30 and django_settings.NOTIFICATION_LEASE_S + period <= 60
    from dosereg.celery import app

    app.loader.import_default_modules()
    assert "dosereg.requeue_notification_leases" in app.tasks


@pytest.mark.django_db(transaction=True)
def test_a_batch_killed_mid_send_is_resent_whole_exactly_once(hanging_smtp, settings):
    """A batch task (one SMTP connection for several e-mails) dies on its first e-mail: the ones it never reached
    are re-queued with it (the batch leased them all), and the 5-minute "lost enqueue" sweep leaves them alone."""
    from dosereg.notifications.services import notifications_sweep

    settings.NOTIFICATION_LEASE_S = 2
    rows = [Notification.objects.create(dedupe_key=f"lease:b{i}", recipient=f"r{i}@x.test", subject=f"S{i}", body="B")
            for i in range(3)]
    env = dict(os.environ, DATABASE_URL=_db_url(), DOSEREG_PRODUCTION="false", EMAIL_HOST="127.0.0.1",
               EMAIL_PORT=str(hanging_smtp.port), EMAIL_TIMEOUT="30", NOTIFICATION_LEASE_S="2",
               DJANGO_SETTINGS_MODULE="dosereg.settings")
    env.pop("REDIS_URL", None)
    code = ("import django; django.setup(); from dosereg.notifications.services import notifications_deliver_batch; "
            f"print(notifications_deliver_batch({[n.pk for n in rows]}))")
    worker = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        assert hanging_smtp.data_started.wait(60), worker.communicate(timeout=5)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
    Notification.objects.update(created_at=timezone.now() - timedelta(hours=1))  # old enough for the 5-minute sweep
    assert notifications_sweep() == 0  # leased: not a lost enqueue
    leases = Notification.objects.values_list("lease_until", flat=True)
    assert all(leases)
    while timezone.now() <= max(leases):
        time.sleep(0.2)
    assert notifications_requeue_expired() == 3
    assert sorted(m["Subject"] for m in hanging_smtp.messages) == ["S0", "S1", "S2"]
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    assert notifications_requeue_expired(now=timezone.now() + timedelta(hours=1)) == 0
    assert len(hanging_smtp.messages) == 3
