"""Single-statement inserts (registry.inserts): a conflict neither raises nor aborts the transaction, the new row
gets its key, and an upsert is one statement without a transaction of its own."""
from __future__ import annotations

import datetime as dt
from unittest import mock

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


@pytest.mark.django_db
def test_the_kept_insert_statement_is_what_django_compiles_for_each_row():
    """The INSERT text is compiled once per model; later rows bind their values the way Django's compiler does
    (pre_save on insert, then get_db_prep_save): same SQL and same params as a fresh compile, JSON and dates too."""
    from django.utils import timezone

    from dosereg.registry import inserts
    from dosereg.registry.models import DoseObject, Study

    rows = [
        Patient(issuer="HOSP", patient_id="INS-K1", name="A^B", birth_date=dt.date(1970, 1, 2)),
        Patient(issuer="", patient_id="INS-K2", name="", sex="F"),
        DoseObject(sop_instance_uid="1.2.3.4", sha256="ab" * 32, sop_class_uid="1.2.840.10008.5.1.4.1.1.88.67",
                   path="/spool/x.dcm", size_bytes=10, calling_ae="MOD1", enqueued_at=timezone.now()),
        DoseObject(sop_instance_uid="1.2.3.5", sha256="cd" * 32, sop_class_uid="1.2", path="/spool/y.dcm", size_bytes=0,
                   status=DoseObject.STATUS_QUARANTINED, quarantine_reason="held", warnings=["w"], flags=["f"]),
        Study(study_instance_uid="1.2.3.6", study_datetime=timezone.now(), flags=["x"], dap_total_gy_cm2=1.5,
              protocol_names="A | B"),
    ]
    inserts._INSERT_SQL.clear()
    fixed = timezone.now()
    with mock.patch("django.utils.timezone.now", return_value=fixed):  # auto_now_add columns: one instant
        for obj in rows:
            first = inserts._insert_statement(obj, "default")  # compiles, keeps the text
            assert (type(obj), "default", False) in inserts._INSERT_SQL
            kept = inserts._insert_statement(obj, "default")  # binds the values only
            fresh = inserts._compiled_insert(obj, "default")
            assert kept[0] == fresh[0] == first[0]
            assert [str(p) for p in kept[1]] == [str(p) for p in fresh[1]]
    assert insert_unless_conflict(rows[0]) and Patient.objects.get(pk=rows[0].pk).birth_date == dt.date(1970, 1, 2)
    assert insert_unless_conflict(rows[4]) and Study.objects.get(pk=rows[4].pk).flags == ["x"]
