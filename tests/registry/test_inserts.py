"""Single-statement inserts (registry.inserts): a conflict neither raises nor aborts the transaction, the new row
gets its key, and an upsert is one statement without a transaction of its own."""
from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from dosereg.protocols.models import SummaryBucket
from dosereg.registry.inserts import insert_unless_conflict, upsert
from dosereg.registry.models import Patient


@pytest.mark.django_db
def test_insert_unless_conflict_inserts_once_and_keeps_the_transaction_usable():
    with transaction.atomic():
        first = Patient(issuer="HOSP", patient_id="INS-1", name="A^B")
        assert insert_unless_conflict(first) is True
        assert first.pk is not None and not first._state.adding
        again = Patient(issuer="HOSP", patient_id="INS-1", name="Other^Name")
        assert insert_unless_conflict(again) is False and again.pk is None
        # the transaction goes on after the conflict (no savepoint was needed)
        assert Patient.objects.filter(issuer="HOSP", patient_id="INS-1").count() == 1
        assert Patient.objects.get(pk=first.pk).name == "A^B"


@pytest.mark.django_db(transaction=True)
def test_upsert_is_one_statement_and_updates_the_named_fields_only():
    day = dt.date(2026, 11, 1)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    end = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)
    with CaptureQueriesContext(connection) as cq:
        upsert(SummaryBucket, [SummaryBucket(device_key=7, month=day, starts_at=start, ends_at=end, dirty=True)],
               unique_fields=["device_key", "month"], update_fields=["dirty", "marked_at"])
    assert len(cq.captured_queries) == 1  # no BEGIN / COMMIT around it
    SummaryBucket.objects.filter(device_key=7).update(dirty=False, n_studies=3)
    upsert(SummaryBucket, [SummaryBucket(device_key=7, month=day, starts_at=start, ends_at=end, dirty=True, n_studies=0)],
           unique_fields=["device_key", "month"], update_fields=["dirty", "marked_at"])
    row = SummaryBucket.objects.get(device_key=7, month=day)
    assert row.dirty is True and row.n_studies == 3  # n_studies was not among the fields to update
    assert SummaryBucket.objects.count() == 1
