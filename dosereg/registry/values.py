"""Received values made storable by the ingest: text (``_s``), date-times bounded to what PostgreSQL and Python
both read (``_bounded``), and flags raised on the document (``_flag``)."""
from __future__ import annotations

from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

from django.utils import timezone

from dosereg.rdsr import records as R


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if timezone.is_naive(value):
        return timezone.make_aware(value, timezone.get_default_timezone())
    return value


EARLIEST_DATETIME = datetime(1895, 1, 1, tzinfo=dt_timezone.utc)
FUTURE_SLACK = timedelta(days=1)


_SAFE_EARLIEST = datetime(1895, 1, 2)  # a wall-clock time in range at any UTC offset (at most 14 h)
_SAFE_LATEST: list = [0.0, datetime.min]


def _safe_latest() -> datetime:
    """A naive wall-clock time before which every value is in range at any UTC offset: now in UTC (an offset
    adds at most 14 h, under the day of slack). Read once a minute: older is only more cautious."""
    import time as _time

    if _time.monotonic() > _SAFE_LATEST[0]:
        _SAFE_LATEST[:] = [_time.monotonic() + 60.0, timezone.now().replace(tzinfo=None)]
    return _SAFE_LATEST[1]


def _bounded(value: datetime | None, doc: R.DoseDocument, what: str) -> datetime | None:
    """``value`` made aware, or None (flagged on ``doc``) when it is outside [1895-01-01, now + 1 day] in UTC.

    The extractor already nulls such values; this is the registry's own bound: a naive 9999-12-31 23:00 on a
    server west of UTC is year 10000 in UTC, which PostgreSQL stores and Python cannot read back."""
    if value is None:
        return None
    wall = value.replace(tzinfo=None) if value.tzinfo is not None else value
    if _SAFE_EARLIEST <= wall < _safe_latest():  # in range whatever its time zone (the common case): no arithmetic
        return _aware(value)
    try:
        aware = _aware(value)
        utc = aware.astimezone(dt_timezone.utc) if aware is not None else None
    except (OverflowError, ValueError):
        utc = None
    if utc is not None and EARLIEST_DATETIME <= utc <= timezone.now() + FUTURE_SLACK:
        return aware
    msg = f"implausible date: {what} {value.isoformat()} is out of range after time-zone handling; stored as null"
    if msg not in doc.flags:
        doc.flags.append(msg)
        doc.warnings.append(msg)
    return None


def _s(value) -> str:
    return "" if value is None else str(value)


def _flag(doc: R.DoseDocument, msg: str) -> None:
    if msg not in doc.flags:
        doc.flags.append(msg)
        doc.warnings.append(msg)
