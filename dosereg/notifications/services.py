"""Generic notification delivery other apps reuse.

    notification_enqueue(dedupe_key=..., recipients=[...], subject=..., body=...)

creates one Notification per (dedupe_key, recipient) unless it exists (then it
does nothing: never re-sends) and queues ``dosereg.send_notifications`` after the
surrounding transaction commits (``notification_enqueue_many`` does the same for many
requests with one SELECT, one INSERT and one task that uses one SMTP connection). Low-severity notifications with ``digest=True``
wait for the daily digest (``dosereg.send_notification_digest``).
"""
from __future__ import annotations

import logging
import smtplib
import socket
import time
from collections import defaultdict
from datetime import timedelta
from typing import Any

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
    return notification_enqueue_many([dict(dedupe_key=dedupe_key, recipients=recipients, subject=subject, body=body,
                                           severity=severity, digest=digest)])


def notification_enqueue_many(requests: list[dict]) -> list[Notification]:
    """Several ``notification_enqueue`` requests at once: one SELECT, one bulk INSERT and, after the
    surrounding transaction commits, one ``dosereg.send_notifications`` task that delivers them all over
    one SMTP connection. Returns the rows created now; existing (dedupe_key, recipient) pairs are left alone."""
    rows: list[Notification] = []
    seen: set[tuple[str, str]] = set()
    for req in requests:
        severity = req.get("severity", "normal")
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}")
        key = str(req["dedupe_key"])[:255]
        digest = bool(req.get("digest", False))
        held_for_digest = digest and severity == SEVERITY_LOW
        for r in req.get("recipients") or []:
            r = (r or "").strip()[:254]
            if not r or (key, r) in seen:
                continue
            seen.add((key, r))
            rows.append(Notification(
                dedupe_key=key, recipient=r, subject=str(req["subject"])[:255], body=req["body"], severity=severity,
                digest=digest, status=Notification.STATUS_DIGEST if held_for_digest else Notification.STATUS_PENDING,
            ))
    if not rows:
        return []
    created: list[Notification] = []
    with transaction.atomic():
        existing = set(
            Notification.objects.filter(dedupe_key__in={n.dedupe_key for n in rows}, recipient__in={n.recipient for n in rows})
            .values_list("dedupe_key", "recipient")
        )
        rows = [n for n in rows if (n.dedupe_key, n.recipient) not in existing]
        if rows:
            try:
                with transaction.atomic():
                    created = Notification.objects.bulk_create(rows)
            except IntegrityError:  # a concurrent enqueue of some key won: insert one by one, theirs stand
                created = []
                for n in rows:
                    try:
                        with transaction.atomic():
                            n.pk = None
                            n.save(force_insert=True)
                    except IntegrityError:
                        continue
                    created.append(n)
    to_send = [n.pk for n in created if n.status == Notification.STATUS_PENDING]
    if to_send:
        transaction.on_commit(lambda: _enqueue_batch(to_send))
    return created


def _enqueue_batch(notification_ids: list[int]) -> None:
    from .tasks import send_notifications_task

    try:
        send_notifications_task.apply_async(args=(notification_ids,))
    except Exception as exc:  # broker down: the rows stay pending; notifications_sweep re-queues them
        log.warning("could not enqueue notifications %s: %s", notification_ids, exc)


def _enqueue_send(notification_id: int, *, retries: int = 0, countdown: int | None = None) -> None:
    from .tasks import send_notification_task

    try:
        options: dict[str, Any] = {"retries": retries}
        if countdown is not None:
            options["countdown"] = countdown
        send_notification_task.apply_async(args=(notification_id,), **options)
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


def _lease_s() -> int:
    return max(1, settings.NOTIFICATION_LEASE_S)


def notification_claim(notification_id: int) -> Notification | None:
    """Claim a pending row for one attempt (committed at once): the attempt is counted and the row leased for
    NOTIFICATION_LEASE_S. A worker that dies before finishing leaves the lease to expire, and
    ``notifications_requeue_expired`` (beat, every NOTIFICATION_LEASE_SWEEP_S) sends it again."""
    with transaction.atomic():
        n = Notification.objects.select_for_update().filter(pk=notification_id).first()
        if n is None or n.status != Notification.STATUS_PENDING:
            return None
        n.attempt_count += 1
        n.lease_until = timezone.now() + timedelta(seconds=_lease_s())
        n.save(update_fields=["attempt_count", "lease_until"])
    return n


def notification_deliver(*, notification_id: int, final_attempt: bool = False, connection=None,
                         retry_in_s: int = 0) -> str:
    """One delivery attempt: claimed (``notification_claim``), then sent with the row locked, so two workers
    never both send (the lease sweep skips locked rows). ``connection``: an open mail connection to reuse
    (``notifications_deliver_batch``). ``retry_in_s``: when a transient error is retried (the lease covers the
    wait, so a retry lost with its worker is re-queued too)."""
    if notification_claim(notification_id) is None:
        return SKIPPED
    with transaction.atomic():
        n = Notification.objects.select_for_update().get(pk=notification_id)
        if n.status != Notification.STATUS_PENDING:
            return SKIPPED
        final_attempt = final_attempt or n.attempt_count >= settings.NOTIFICATION_MAX_ATTEMPTS
        try:
            if connection is None:
                connection = get_connection(fail_silently=False)  # send() opens and closes it
            else:
                connection.open()  # a batch's shared session: opened once, stays open after send()
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
                n.lease_until = timezone.now() + timedelta(seconds=retry_in_s + _lease_s())
                n.save(update_fields=["last_error", "lease_until"])
                log.info("notification %s: transient error, will retry: %s", n.pk, exc)
                return RETRY
            n.status = Notification.STATUS_FAILED
            n.lease_until = None
            n.save(update_fields=["last_error", "status", "lease_until"])
            log.warning("notification %s to %s failed: %s", n.pk, n.recipient, exc)
            return FAILED
        NotificationAttempt.objects.create(notification=n, recipient=n.recipient, outcome=NotificationAttempt.OUTCOME_SENT)
        n.status = Notification.STATUS_SENT
        n.sent_at = timezone.now()
        n.last_error = ""
        n.lease_until = None
        n.save(update_fields=["status", "sent_at", "last_error", "lease_until"])
    return SENT


def notifications_deliver_batch(notification_ids: list[int]) -> dict[str, int]:
    """Deliver several notifications over one SMTP connection (opened once, re-opened after an error).
    A transient failure hands that one notification to ``dosereg.send_notification``, whose back-off
    retries continue the count (this attempt was the first); a permanent failure is final."""
    from .tasks import FIRST_RETRY_COUNTDOWN_S

    outcomes: dict[str, int] = defaultdict(int)
    connection = None
    # the whole batch is this task's: a worker lost before reaching a row leaves it to the lease sweep too;
    # the lease of the rows still to send is renewed as the batch goes (a long, live batch is not re-queued)
    renewed = 0.0
    try:
        for i, pk in enumerate(notification_ids):
            if time.monotonic() - renewed > _lease_s() / 2:
                renewed = time.monotonic()
                Notification.objects.filter(pk__in=notification_ids[i:], status=Notification.STATUS_PENDING).update(
                    lease_until=timezone.now() + timedelta(seconds=_lease_s()))
            if connection is None:
                connection = get_connection(fail_silently=False)
            outcome = notification_deliver(notification_id=pk, connection=connection, retry_in_s=FIRST_RETRY_COUNTDOWN_S)
            outcomes[outcome] += 1
            if outcome in (RETRY, FAILED):
                _close_quietly(connection)  # the session may be broken: the next message opens a new one
                connection = None
            if outcome == RETRY:
                _enqueue_send(pk, retries=1, countdown=FIRST_RETRY_COUNTDOWN_S)
    finally:
        _close_quietly(connection)
    return dict(outcomes)


def _close_quietly(connection) -> None:
    if connection is None:
        return
    try:
        connection.close()
    except Exception as exc:  # closing a dead session must not fail the batch
        log.debug("closing mail connection: %s", exc)


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
    # (a row with a lease belongs to a task, or to notifications_requeue_expired when its worker died)
    ids = list(Notification.objects.filter(status=Notification.STATUS_PENDING, attempt_count=0, created_at__lt=cutoff,
                                           lease_until=None)
               .values_list("pk", flat=True)[:1000])
    for start in range(0, len(ids), 100):
        _enqueue_batch(ids[start:start + 100])
    return len(ids)


def notifications_requeue_expired(*, now=None, limit: int = 500) -> int:
    """Re-queue pending notifications whose lease expired: their delivery was claimed (or its retry scheduled)
    by a worker that died. Rows being sent right now are locked by their sender and skipped (SKIP LOCKED), so a
    live but slow delivery is never doubled. Each re-queue is recorded as an "interrupted" attempt and renews the
    lease (the next sweep does not queue it again); after NOTIFICATION_MAX_ATTEMPTS claims the row fails."""
    now = now or timezone.now()
    requeue: list[int] = []
    with transaction.atomic():
        rows = list(Notification.objects.select_for_update(skip_locked=True)
                    .filter(status=Notification.STATUS_PENDING, lease_until__lt=now).order_by("lease_until")[:limit])
        if not rows:
            return 0
        note = "the delivery did not finish within its lease (worker lost?)"
        NotificationAttempt.objects.bulk_create([
            NotificationAttempt(notification=n, recipient=n.recipient, outcome=NotificationAttempt.OUTCOME_INTERRUPTED,
                                error=note) for n in rows])
        for n in rows:
            n.last_error = note
            if n.attempt_count >= settings.NOTIFICATION_MAX_ATTEMPTS:
                n.status, n.lease_until = Notification.STATUS_FAILED, None
                log.warning("notification %s to %s failed: interrupted %s times", n.pk, n.recipient, n.attempt_count)
            else:
                n.lease_until = now + timedelta(seconds=_lease_s())
                requeue.append(n.pk)
        Notification.objects.bulk_update(rows, ["last_error", "status", "lease_until"])
        if requeue:
            log.warning("re-queueing %s interrupted notification(s): %s", len(requeue), requeue[:20])
            def enqueue_all() -> None:
                for i in range(0, len(requeue), 100):
                    _enqueue_batch(requeue[i:i + 100])

            transaction.on_commit(enqueue_all)
    return len(requeue)
