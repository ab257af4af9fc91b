"""Case settings, read from django.conf.settings, with documented defaults."""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings


def site_url() -> str:
    """Absolute base of links in e-mails, e.g. "https://dosereg.hospital.org" (no trailing slash)."""
    return (getattr(settings, "SITE_URL", "") or "http://localhost:8000").rstrip("/")


NOTIFY_MAX_AGE_DAYS_DEFAULT = 30  # as declared in dosereg.settings (ALERT_NOTIFY_MAX_AGE_DAYS)


def notify_max_age_days() -> int | None:
    """Cases of procedures older than this are opened but not e-mailed (back-fills, re-processing). None: no limit.
    ``ALERT_NOTIFY_MAX_AGE_DAYS`` (default 30 days; 0 = no limit); the older ``EXPOSURE_NOTIFY_MAX_AGE_DAYS`` is
    honoured when that is not set at all."""
    v = getattr(settings, "ALERT_NOTIFY_MAX_AGE_DAYS", None)
    if v is None:
        v = getattr(settings, "EXPOSURE_NOTIFY_MAX_AGE_DAYS", NOTIFY_MAX_AGE_DAYS_DEFAULT)
    return int(v) if v else None


def too_old_to_notify(exam_date: datetime | None, now: datetime) -> int | None:
    """The limit in days when ``exam_date`` is older than it, else None."""
    limit = notify_max_age_days()
    if limit is not None and exam_date is not None and exam_date < now - timedelta(days=limit):
        return limit
    return None


def follow_up_default_days() -> int:
    """A follow-up's default due date when the rule suggested none or the suggestion has passed: today + this."""
    return int(getattr(settings, "CASE_FOLLOW_UP_DEFAULT_DAYS", 14))


def worklist_page_size() -> int:
    return int(getattr(settings, "CASE_WORKLIST_PAGE_SIZE", 50))
