"""Generic notification delivery other apps reuse.

    notification_enqueue(dedupe_key=..., recipients=[...], subject=..., body=...)

creates one Notification per (dedupe_key, recipient) unless it exists (then it
does nothing: never re-sends) and queues ``dosereg.send_notification`` after the
surrounding transaction commits. Low-severity notifications with ``digest=True``
wait for the daily digest (``dosereg.send_notification_digest``).
"""
from __future__ import annotations

import logging
import smtplib
import socket
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import SEVERITIES, SEVERITY_LOW, Notification, NotificationAttempt

log = logging.getLogger(__name__)

# outcomes of notification_deliver
SENT = "sent"
RETRY = "retry"
FAILED = "failed"
SKIPPED = "skipped"


def notification_enqueue(
    *, dedupe_key: str, recipients: list[str], subject: str, body: str, severity: str = "normal", digest: bool = False
) -> list[Notification]:
    """Create the missing (dedupe_key, recipient) rows; return only the rows created now."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}")
    wanted = []
    for r in recipients:
        r = (r or "").strip()
        if r and r not in wanted:
            wanted.append(r)
    if not wanted:
        return []
    dedupe_key = dedupe_key[:255]
    held_for_digest = digest and severity == SEVERITY_LOW
    created: list[Notification] = []
    with transaction.atomic():
        existing = set(
            Notification.objects.filter(dedupe_key=dedupe_key, recipient__in=wanted).values_list("recipient", flat=True)
        )
        for recipient in wanted:
            if recipient in existing:
                continue
            try:
                with transaction.atomic():  # savepoint: a concurrent enqueue of the same key wins quietly
                    n = Notification.objects.create(
                        dedupe_key=dedupe_key, recipient=recipient[:254], subject=subject[:255], body=body,
                        severity=severity, digest=digest,
                        status=Notification.STATUS_DIGEST if held_for_digest else Notification.STATUS_PENDING,
                    )
            except IntegrityError:
                continue
            created.append(n)
    to_send = [n.pk for n in created if n.status == Notification.STATUS_PENDING]
    if to_send:
        transaction.on_commit(lambda: [_enqueue_send(pk) for pk in to_send])
    return created


def _enqueue_send(notification_id: int) -> None:
    from .tasks import send_notification_task

    try:
        send_notification_task.apply_async(args=[notification_id])
    except Exception as exc:  # broker down: the row stays pending; notifications_sweep re-queues it
        log.warning("could not enqueue notification %s: %s", notification_id, exc)


def is_transient(exc: BaseException) -> bool:
    """Only these named errors are retried; anything else is a permanent failure."""
    if isinstance(exc, smtplib.SMTPResponseException):  # includes SMTPConnectError, SMTPDataError, SMTPSenderRefused
        return 400 <= int(exc.smtp_code) < 500
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return bool(codes) and all(400 <= int(c) < 500 for c in codes)
    return isinstance(exc, (smtplib.SMTPServerDisconnected, ConnectionRefusedError, socket.timeout, TimeoutError))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def notification_deliver(*, notification_id: int, final_attempt: bool = False) -> str:
    """One delivery attempt. The row is locked while sending, so two workers never both send."""
    with transaction.atomic():
        n = Notification.objects.select_for_update().get(pk=notification_id)
        if n.status != Notification.STATUS_PENDING:
            return SKIPPED
        n.attempt_count += 1
        try:
            connection = get_connection(fail_silently=False)
            sent = EmailMessage(
                subject=n.subject, body=n.body, from_email=settings.DEFAULT_FROM_EMAIL, to=[n.recipient],
                connection=connection,
            ).send()
            if not sent:
                raise smtplib.SMTPException("the mail backend accepted no message")
        except Exception as exc:  # classified below: transient named errors are retried, others never
            transient = is_transient(exc)
            NotificationAttempt.objects.create(
                notification=n, recipient=n.recipient, error=_describe(exc),
                outcome=NotificationAttempt.OUTCOME_TRANSIENT if transient else NotificationAttempt.OUTCOME_PERMANENT,
            )
            n.last_error = _describe(exc)
            if transient and not final_attempt:
                n.save(update_fields=["attempt_count", "last_error"])
                log.info("notification %s: transient error, will retry: %s", n.pk, exc)
                return RETRY
            n.status = Notification.STATUS_FAILED
            n.save(update_fields=["attempt_count", "last_error", "status"])
            log.warning("notification %s to %s failed: %s", n.pk, n.recipient, exc)
            return FAILED
        NotificationAttempt.objects.create(notification=n, recipient=n.recipient, outcome=NotificationAttempt.OUTCOME_SENT)
        n.status = Notification.STATUS_SENT
        n.sent_at = timezone.now()
        n.last_error = ""
        n.save(update_fields=["attempt_count", "status", "sent_at", "last_error"])
    return SENT


def notifications_send_digest(*, now=None) -> int:
    """Bundle all notifications waiting for the digest into one e-mail per recipient."""
    now = now or timezone.now()
    pending = list(Notification.objects.filter(status=Notification.STATUS_DIGEST).order_by("created_at", "id"))
    by_recipient: dict[str, list[Notification]] = defaultdict(list)
    for n in pending:
        by_recipient[n.recipient].append(n)
    sent = 0
    for recipient, items in by_recipient.items():
        with transaction.atomic():
            body = "\n\n".join(f"— {n.subject}\n{n.body}" for n in items)
            key = f"digest:{now:%Y-%m-%d}:{items[0].pk}-{items[-1].pk}:{len(items)}"
            created = notification_enqueue(
                dedupe_key=key, recipients=[recipient], severity="normal",
                subject=f"dosereg daily digest: {len(items)} low-priority notification(s)", body=body,
            )
            digest_row = created[0] if created else Notification.objects.get(dedupe_key=key[:255], recipient=recipient)
            Notification.objects.filter(pk__in=[n.pk for n in items]).update(
                status=Notification.STATUS_DIGESTED, digested_in=digest_row
            )
            sent += 1
    return sent


def notifications_sweep(*, older_than_s: int = 300) -> int:
    """Re-queue pending notifications whose task was lost (broker down at enqueue time)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    # never attempted: the enqueue was lost. Rows in a retry back-off already have a scheduled task.
    ids = list(Notification.objects.filter(status=Notification.STATUS_PENDING, attempt_count=0, created_at__lt=cutoff)
               .values_list("pk", flat=True)[:1000])
    for pk in ids:
        _enqueue_send(pk)
    return len(ids)
