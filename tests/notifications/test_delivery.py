"""Delivery over real SMTP (aiosmtpd on loopback): dedupe, named transient retries, permanent failures, digest."""
from __future__ import annotations

import smtplib
import socket

import pytest

from dosereg.notifications.models import Notification, NotificationAttempt
from dosereg.notifications.services import is_transient, notification_enqueue, notifications_send_digest

pytestmark = pytest.mark.django_db


def enqueue(**kw):
    args = dict(dedupe_key="test:1", recipients=["a@x.test"], subject="Subject", body="Body")
    args.update(kw)
    return notification_enqueue(**args)


def test_delivered_once_and_never_resent(smtp_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        made = enqueue(recipients=["a@x.test", "b@x.test", "a@x.test"])
    assert len(made) == 2
    assert len(smtp_server.messages) == 2
    assert smtp_server.to("a@x.test")[0]["Subject"] == "Subject"
    with django_capture_on_commit_callbacks(execute=True):
        again = enqueue(recipients=["a@x.test", "b@x.test"], subject="changed")
    assert again == []
    assert len(smtp_server.messages) == 2
    assert Notification.objects.count() == 2
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    # a new recipient for the same key gets exactly one
    with django_capture_on_commit_callbacks(execute=True):
        assert len(enqueue(recipients=["a@x.test", "c@x.test"])) == 1
    assert len(smtp_server.messages) == 3


def test_transient_4xx_then_success_retries_once(smtp_server, django_capture_on_commit_callbacks):
    smtp_server.fail_next = ["451 4.3.0 Temporary local problem, try later"]
    with django_capture_on_commit_callbacks(execute=True):
        (n,) = enqueue()
    n.refresh_from_db()
    assert n.status == Notification.STATUS_SENT
    assert len(smtp_server.messages) == 1
    attempts = list(NotificationAttempt.objects.filter(notification=n))
    assert [a.outcome for a in attempts] == ["transient_error", "sent"]
    assert "451" in attempts[0].error and attempts[0].recipient == "a@x.test"
    assert n.attempt_count == 2


def test_permanent_5xx_is_not_retried(smtp_server, django_capture_on_commit_callbacks):
    smtp_server.fail_next = ["554 5.7.1 Message rejected", "250 would have worked"]
    with django_capture_on_commit_callbacks(execute=True):
        (n,) = enqueue()
    n.refresh_from_db()
    assert n.status == Notification.STATUS_FAILED
    assert smtp_server.messages == []
    attempts = list(NotificationAttempt.objects.filter(notification=n))
    assert [a.outcome for a in attempts] == ["permanent_error"]
    assert "554" in attempts[0].error
    assert smtp_server.fail_next == ["250 would have worked"]  # no second DATA


def test_connection_refused_is_retried_until_exhausted(settings, django_capture_on_commit_callbacks):
    from tests.notifications.smtp import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()  # nothing listens there
    with django_capture_on_commit_callbacks(execute=True):
        (n,) = enqueue()
    n.refresh_from_db()
    from dosereg.notifications.tasks import MAX_RETRIES

    assert n.status == Notification.STATUS_FAILED
    outcomes = list(NotificationAttempt.objects.filter(notification=n).values_list("outcome", flat=True))
    assert outcomes == ["transient_error"] * (MAX_RETRIES + 1)


@pytest.mark.parametrize(
    "exc, transient",
    [
        (smtplib.SMTPServerDisconnected("gone"), True),
        (smtplib.SMTPConnectError(421, b"busy"), True),
        (ConnectionRefusedError(), True),
        (socket.timeout(), True),
        (TimeoutError(), True),
        (smtplib.SMTPDataError(452, b"insufficient storage"), True),
        (smtplib.SMTPSenderRefused(450, b"mailbox busy", "from@x"), True),
        (smtplib.SMTPDataError(554, b"rejected"), False),
        (smtplib.SMTPRecipientsRefused({"a@x": (550, b"no such user")}), False),
        (smtplib.SMTPRecipientsRefused({"a@x": (450, b"greylisted")}), True),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), False),
        (ValueError("bug"), False),
        (OSError("disk"), False),
    ],
)
def test_only_named_transient_errors_retry(exc, transient):
    assert is_transient(exc) is transient


def test_low_severity_digest(smtp_server, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(dedupe_key="d:1", severity="low", digest=True, subject="first low")
        enqueue(dedupe_key="d:2", severity="low", digest=True, subject="second low")
        enqueue(dedupe_key="d:3", severity="normal", digest=True, subject="normal is immediate")
    assert [m["Subject"] for m in smtp_server.messages] == ["normal is immediate"]
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications_send_digest() == 1
    assert len(smtp_server.messages) == 2
    digest = smtp_server.messages[1]
    assert "2 low-priority" in digest["Subject"]
    body = digest.get_payload(decode=True).decode()
    assert "first low" in body and "second low" in body
    assert set(Notification.objects.filter(dedupe_key__in=["d:1", "d:2"]).values_list("status", flat=True)) == {"digested"}
    with django_capture_on_commit_callbacks(execute=True):
        assert notifications_send_digest() == 0
    assert len(smtp_server.messages) == 2


def test_unique_constraint_in_database(db):
    from django.db import IntegrityError, transaction

    Notification.objects.create(dedupe_key="k", recipient="a@x.test", subject="s", body="b")
    with pytest.raises(IntegrityError), transaction.atomic():
        Notification.objects.create(dedupe_key="k", recipient="a@x.test", subject="s2", body="b2")


def test_many_notifications_share_one_smtp_connection(smtp_server, django_capture_on_commit_callbacks):
    from dosereg.notifications.services import notification_enqueue_many

    reqs = [dict(dedupe_key=f"batch:{i}", recipients=["a@x.test", "b@x.test"], subject=f"S{i}", body="B") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        made = notification_enqueue_many(reqs)
    assert len(made) == 6 and len(callbacks) == 1  # one task for the whole batch
    assert len(smtp_server.messages) == 6
    assert smtp_server.sessions == 1
    assert set(Notification.objects.values_list("status", flat=True)) == {"sent"}
    # enqueueing the same batch again creates and sends nothing
    with django_capture_on_commit_callbacks(execute=True):
        assert notification_enqueue_many(reqs) == []
    assert len(smtp_server.messages) == 6


def test_transient_error_inside_a_batch_retries_only_that_one(smtp_server, django_capture_on_commit_callbacks):
    from dosereg.notifications.services import notification_enqueue_many

    smtp_server.fail_next = ["452 4.3.1 Insufficient system storage"]  # the batch's first DATA fails transiently
    reqs = [dict(dedupe_key=f"batch:{i}", recipients=["a@x.test"], subject=f"S{i}", body="B") for i in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        made = notification_enqueue_many(reqs)
    first = made[0]
    first.refresh_from_db()
    assert first.status == Notification.STATUS_SENT and first.attempt_count == 2
    assert [a.outcome for a in first.attempts.all()] == ["transient_error", "sent"]
    assert sorted(m["Subject"] for m in smtp_server.messages) == ["S0", "S1", "S2"]  # each exactly once
    for n in made[1:]:
        n.refresh_from_db()
        assert n.status == Notification.STATUS_SENT and n.attempt_count == 1
