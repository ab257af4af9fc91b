"""Notification tasks: retry only named transient SMTP/network errors, with backoff."""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

MAX_RETRIES = 6
FIRST_RETRY_COUNTDOWN_S = 5


def _countdown(retries: int) -> int:
    return min(600, FIRST_RETRY_COUNTDOWN_S * (2 ** max(0, retries - 1)))  # 5 s, 10 s, 20 s … capped at 10 min


@shared_task(bind=True, name="dosereg.send_notification", max_retries=MAX_RETRIES, acks_late=True,
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=2, retry_backoff_max=60)
def send_notification_task(self, notification_id: int) -> str:
    from .services import RETRY, notification_deliver

    final = self.request.retries >= MAX_RETRIES
    outcome = notification_deliver(notification_id=notification_id, final_attempt=final,
                                   retry_in_s=_countdown(self.request.retries + 1))
    if outcome == RETRY:
        raise self.retry(countdown=_countdown(self.request.retries + 1))
    return outcome


@shared_task(name="dosereg.send_notifications", acks_late=True, max_retries=MAX_RETRIES,
             autoretry_for=(OperationalError, InterfaceError), retry_backoff=2, retry_backoff_max=60)
def send_notifications_task(notification_ids: list[int]) -> dict:
    """Deliver a batch over one SMTP connection; delivery is idempotent, so a retried batch skips what was sent."""
    from .services import notifications_deliver_batch

    return notifications_deliver_batch(list(notification_ids))


@shared_task(name="dosereg.send_notification_digest", autoretry_for=(OperationalError,), max_retries=3, retry_backoff=5)
def send_notification_digest_task() -> int:
    from .services import notifications_send_digest

    return notifications_send_digest()


@shared_task(name="dosereg.sweep_notifications", autoretry_for=(OperationalError,), max_retries=3, retry_backoff=5)
def sweep_notifications_task() -> int:
    from .services import notifications_sweep

    return notifications_sweep()


@shared_task(name="dosereg.requeue_notification_leases", autoretry_for=(OperationalError,), max_retries=3,
             retry_backoff=2)
def requeue_notification_leases_task() -> int:
    """Beat, every NOTIFICATION_LEASE_SWEEP_S: deliveries lost with their worker are sent again within a minute."""
    from .services import notifications_requeue_expired

    return notifications_requeue_expired()
