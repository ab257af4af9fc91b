"""Backfill argument parsing, rate limiting and date chunks (no network)."""
from __future__ import annotations

from datetime import date

import pytest

from dicom_listener.backfill import (
    DOSE_SR_CLASSES,
    IMAGE_CLASSES,
    BackfillError,
    RateLimiter,
    Remote,
    date_chunks,
    parse_date,
    parse_rate,
    parse_remote,
)


def test_parse_remote_rate_and_date():
    assert parse_remote("PACS@pacs.example.org:104") == Remote("PACS", "pacs.example.org", 104)
    assert parse_remote("ORTHANC@[::1]:4242") == Remote("ORTHANC", "::1", 4242)
    for bad in ("PACS:104", "@host:1", "PACS@host", "A" * 17 + "@h:1"):
        with pytest.raises(BackfillError):
            parse_remote(bad)
    assert parse_rate(None) is None and parse_rate("0") is None
    assert parse_rate("5") == 5 and parse_rate("5/s") == 5 and parse_rate("120/m") == 2 and parse_rate("3600/h") == 1
    with pytest.raises(BackfillError):
        parse_rate("fast")
    assert parse_date("2024-02-29") == date(2024, 2, 29) == parse_date("20240229")
    with pytest.raises(BackfillError):
        parse_date("29/02/2024")


def test_rate_limiter_spaces_operations():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(4.0, sleep=sleep, clock=lambda: now[0])
    for _ in range(5):
        limiter.wait()
    assert now[0] == pytest.approx(1.0)  # 5 operations at 4/s: the 5th starts after 1 s
    unlimited = RateLimiter(None, sleep=lambda s: pytest.fail("must not sleep"))
    unlimited.wait()


def test_date_chunks_and_sop_classes():
    assert date_chunks(date(2024, 1, 1), date(2024, 1, 10), None) == [(date(2024, 1, 1), date(2024, 1, 10))]
    chunks = date_chunks(date(2024, 1, 1), date(2024, 1, 10), 4)
    assert chunks == [(date(2024, 1, 1), date(2024, 1, 4)), (date(2024, 1, 5), date(2024, 1, 8)),
                      (date(2024, 1, 9), date(2024, 1, 10))]
    with pytest.raises(BackfillError):
        date_chunks(date(2024, 1, 2), date(2024, 1, 1), None)
    assert "1.2.840.10008.5.1.4.1.1.88.67" in DOSE_SR_CLASSES and "1.2.840.10008.5.1.4.1.1.1.1" in IMAGE_CLASSES
    assert not DOSE_SR_CLASSES & IMAGE_CLASSES
