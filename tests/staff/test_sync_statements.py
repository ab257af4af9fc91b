"""The ingest's staff step (``staff_studies_sync``): a fixed number of statements per call whatever the number of
names, with the same results as linking name by name (participations and their evidence, the unmatched queue and
its occurrence counts, pending participations, withdrawals), and safe when two workers queue the same name."""
from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dosereg.registry.models import DoseObject, Participant
from dosereg.staff.models import Participation, PendingParticipation, ProcedureStaffDose, StaffAlias, UnmatchedName
from dosereg.staff.services import participations_sync_from_registry, staff_create, staff_studies_sync
from tests.conftest import require

from .conftest import make_study


def _study(uid: str, names, *, source: str = "rdsr"):
    """A study whose current report names these people: [(name, role)] or [(name, role, person_id)]."""
    study = make_study(uid, events=[("2025-06-10 09:00:00", 10.0, 5.0)])
    obj = DoseObject.objects.get(study=study)
    _name(study, obj, names, source=source)
    return study


def _name(study, obj, names, *, source: str = "rdsr"):
    for n in names:
        name, role, pid = (*n, "")[:3]
        Participant.objects.create(study=study, dose_object=obj, name=name, role=role, person_id=pid, source=source)


def _statements(fn) -> int:
    with CaptureQueriesContext(connection) as cq:
        fn()
    return len(cq.captured_queries)


@pytest.mark.django_db
def test_statements_per_call_do_not_grow_with_the_number_of_names():
    one = _study("1.2.826.0.1.1", [("Unknown^Alpha", "irradiation_administering")])
    three = _study("1.2.826.0.1.3", [("Unknown^Beta", "irradiation_administering"), ("Unknown^Gamma", "nurse"),
                                     ("Unknown^Delta", "irradiation_authorizing")])
    # names seen for the first time (queued, inserted)
    n1 = _statements(lambda: staff_studies_sync(study_ids=[one.pk]))
    n3 = _statements(lambda: staff_studies_sync(study_ids=[three.pk]))
    assert n3 == n1 <= 10, (n1, n3)
    # names already in the queue, named by new studies (the usual ingest)
    again1 = _study("1.2.826.0.1.11", [("ALPHA, Unknown", "irradiation_administering")])
    again3 = _study("1.2.826.0.1.13", [("Beta Unknown", "irradiation_administering"), ("GAMMA^UNKNOWN", "nurse"),
                                       ("Dr Delta Unknown", "irradiation_authorizing")])
    n1 = _statements(lambda: staff_studies_sync(study_ids=[again1.pk]))
    n3 = _statements(lambda: staff_studies_sync(study_ids=[again3.pk]))
    assert n3 == n1 <= 9, (n1, n3)
    # the same studies synced again (a re-delivered ingest): nothing new, nothing written
    n1 = _statements(lambda: staff_studies_sync(study_ids=[again1.pk]))
    n3 = _statements(lambda: staff_studies_sync(study_ids=[again3.pk]))
    assert n3 == n1 <= 7, (n1, n3)
    assert {u.normalised: u.occurrences for u in UnmatchedName.objects.all()} == {
        "alpha unknown": 2, "beta unknown": 2, "gamma unknown": 2, "delta unknown": 2}
    assert PendingParticipation.objects.count() == 8


@pytest.mark.django_db
def test_linking_staff_statements_do_not_grow_with_the_number_of_names():
    for i in range(4):
        staff_create(name=f"Person^Number{i}", employee_id=f"P{i}", role="nurse")
    one = _study("1.2.826.0.2.1", [("Person^Number0", "irradiation_administering")])
    three = _study("1.2.826.0.2.3", [("Person^Number1", "irradiation_administering"), ("NUMBER2 PERSON", "nurse"),
                                     ("someone", "irradiation_authorizing", "P3")])
    n1 = _statements(lambda: participations_sync_from_registry(study_ids=[one.pk], recompute=False))
    n3 = _statements(lambda: participations_sync_from_registry(study_ids=[three.pk], recompute=False))
    assert n3 <= n1 + 1 <= 9, (n1, n3)  # + 1: the look-up of staff by person id (employee id)
    assert Participation.objects.filter(study=three).count() == 3
    assert Participation.objects.get(study=three, staff__employee_id="P3").role == "authorizing"
    assert Participation.objects.get(study=three, staff__employee_id="P1").role == "nurse"  # the registered role


@pytest.mark.django_db
def test_evidence_of_several_sources_merges_into_one_participation():
    anna = staff_create(name="Mueller^Anna", employee_id="A1", role="radiographer")
    study = _study("1.2.826.0.3.1", [("Mueller^Anna", "irradiation_authorizing")])
    obj = DoseObject.objects.get(study=study)
    _name(study, obj, [("Anna Müller", "")], source="header_performing_physician")
    counts = participations_sync_from_registry(study_ids=[study.pk])
    assert counts == {"linked": 2, "queued": 0, "skipped": 0, "withdrawn": 0}
    part = Participation.objects.get(study=study, staff=anna)
    # "authorizing" first, then an in-room role from the header: the in-room role wins
    assert part.role == "first_operator"
    assert part.sources == [
        {"source": "rdsr", "raw_name": "Mueller^Anna", "role": "authorizing"},
        {"source": "header_performing_physician", "raw_name": "Anna Müller", "role": "first_operator"},
    ]
    assert ProcedureStaffDose.objects.filter(study=study, staff=anna).exists()
    # synced again: nothing changes
    participations_sync_from_registry(study_ids=[study.pk])
    assert Participation.objects.get(pk=part.pk).sources == part.sources


@pytest.mark.django_db
def test_ambiguous_empty_and_resolved_names():
    staff_create(name="Smith^John", employee_id="S1")
    staff_create(name="John Smith", employee_id="S2")
    kim = staff_create(name="Lee^Kim", employee_id="K1", role="nurse")
    resolved = UnmatchedName.objects.create(normalised="kim lee", raw_name="Lee^Kim", status=UnmatchedName.STATUS_RESOLVED,
                                            resolved_staff=kim, occurrences=3)
    StaffAlias.objects.filter(staff=kim).delete()  # the alias was removed after the name was resolved
    study = _study("1.2.826.0.4.1", [("Smith^John", "irradiation_administering"), ("Dr.", "nurse"),
                                     ("Lee^Kim", "irradiation_administering")])
    counts = participations_sync_from_registry(study_ids=[study.pk])
    assert counts == {"linked": 0, "queued": 2, "skipped": 1, "withdrawn": 0}
    assert UnmatchedName.objects.get(normalised="john smith").reason == "ambiguous"
    resolved.refresh_from_db()
    assert resolved.occurrences == 4
    # a resolved name queued again is linked to the person it was resolved to straight away
    assert Participation.objects.get(study=study, staff=kim).role == "nurse"


@pytest.mark.django_db
def test_a_dropped_name_is_withdrawn_and_a_respelled_one_counted_again():
    bo = staff_create(name="Bo^Berg", employee_id="B1", role="nurse")
    study = _study("1.2.826.0.5.1", [("Bo^Berg", "irradiation_administering"), ("Nobody^Known", "irradiation_administering")])
    participations_sync_from_registry(study_ids=[study.pk])
    assert Participation.objects.filter(study=study, staff=bo).exists()
    assert ProcedureStaffDose.objects.filter(study=study, staff=bo).exists()
    um = UnmatchedName.objects.get(normalised="known nobody")
    assert um.occurrences == 1
    # the corrected report: Bo is gone, the unknown person is spelled otherwise
    Participant.objects.filter(study=study).delete()
    _name(study, DoseObject.objects.get(study=study), [("NOBODY, Known", "irradiation_administering")])
    counts = participations_sync_from_registry(study_ids=[study.pk])
    assert counts == {"linked": 0, "queued": 1, "skipped": 0, "withdrawn": 1}
    assert not Participation.objects.filter(study=study).exists()
    assert not ProcedureStaffDose.objects.filter(study=study, staff=bo).exists()
    assert list(PendingParticipation.objects.filter(study=study).values_list("raw_name", flat=True)) == ["NOBODY, Known"]
    um.refresh_from_db()
    assert um.occurrences == 2 and um.raw_name == "Nobody^Known"


@pytest.mark.django_db(transaction=True)
def test_two_workers_queue_the_same_new_names_at_once():
    # SQLite's in-memory shared-cache test database locks whole tables across threads
    require(connection.vendor != "sqlite", "PostgreSQL (DATABASE_URL) for concurrent syncs")
    names = [("Unknown^First", "irradiation_administering"), ("Unknown^Second", "nurse"), ("Unknown^Third", "")]
    a = _study("1.2.826.0.6.1", names)
    b = _study("1.2.826.0.6.2", names[::-1])  # the other order: no deadlock either
    for attempt in range(3):
        jobs = [a.pk, b.pk, a.pk, b.pk] if attempt < 2 else [a.pk, a.pk]
        barrier = threading.Barrier(len(jobs))
        errors = []

        def run(study_id):
            try:
                barrier.wait()
                staff_studies_sync(study_ids=[study_id])
            except Exception as exc:  # reported below
                errors.append(repr(exc))
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(sid,)) for sid in jobs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        # each study counts once per name, however many workers synced it
        assert {u.normalised: u.occurrences for u in UnmatchedName.objects.all()} == {
            "first unknown": 2, "second unknown": 2, "third unknown": 2}
        assert PendingParticipation.objects.count() == 6
        if attempt == 0:
            UnmatchedName.objects.all().delete()  # again with names new to both workers


@pytest.mark.django_db(transaction=True)
def test_a_sync_that_waits_for_another_workers_inserts_adds_to_their_rows():
    """Worker B has inserted the queue entry, the pending participations and the participation, not committed yet;
    worker A syncs the same names meanwhile: its inserts wait for B, then find B's rows and add to them."""
    from dosereg.staff import services

    require(connection.vendor != "sqlite", "PostgreSQL (DATABASE_URL) for concurrent syncs")
    kim = staff_create(name="Lee^Kim", employee_id="K1", role="nurse")
    names = [("Lee^Kim", "irradiation_administering"), ("Unknown^Waiting", "irradiation_administering")]
    same = _study("1.2.826.0.7.1", names)
    other = _study("1.2.826.0.7.2", names[::-1])
    b_wrote, b_commit = threading.Event(), threading.Event()
    errors = []

    def worker_b():
        try:
            from django.db import transaction

            with transaction.atomic():
                services._registry_sync([same.pk])
                b_wrote.set()
                b_commit.wait(30)
        except Exception as exc:  # reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    def worker_a(study_id):
        try:
            staff_studies_sync(study_ids=[study_id])
        except Exception as exc:  # reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    b = threading.Thread(target=worker_b)
    b.start()
    assert b_wrote.wait(30)
    a = [threading.Thread(target=worker_a, args=(sid,)) for sid in (same.pk, other.pk)]
    for t in a:
        t.start()
    a[0].join(1.5)
    a[1].join(1.5)
    assert a[0].is_alive() and a[1].is_alive()  # waiting for B's rows
    b_commit.set()
    for t in (b, *a):
        t.join(60)
    assert not errors
    um = UnmatchedName.objects.get()
    assert um.occurrences == 2 and um.raw_name == "Unknown^Waiting"
    assert PendingParticipation.objects.filter(unmatched=um).count() == 2
    part = Participation.objects.get(study=same, staff=kim)
    assert part.sources == [{"source": "rdsr", "raw_name": "Lee^Kim", "role": "nurse"}]
    assert Participation.objects.filter(study=other, staff=kim).exists()
    assert ProcedureStaffDose.objects.filter(study=same, staff=kim).exists()


@pytest.mark.django_db
def test_a_report_that_names_people_is_synced_without_looking_for_its_names():
    from dosereg.staff.services import studies_to_sync

    named = _study("1.2.826.0.8.1", [("Unknown^Named", "irradiation_administering")])
    unnamed = make_study("1.2.826.0.8.2")
    with CaptureQueriesContext(connection) as cq:
        assert studies_to_sync(study_ids=[named.pk], new_study_ids=[named.pk], named_study_ids=[named.pk]) == [named.pk]
        assert studies_to_sync(study_ids=[unnamed.pk], new_study_ids=[unnamed.pk], named_study_ids=[]) == []
    assert not cq.captured_queries
    # not known whether it names anyone (a device merge's follow-up): looked up
    assert studies_to_sync(study_ids=[named.pk]) == [named.pk]
    assert studies_to_sync(study_ids=[unnamed.pk]) == []


@pytest.mark.django_db
def test_a_name_named_twice_by_one_report_counts_twice():
    study = _study("1.2.826.0.9.1", [("Unknown^Twice", "irradiation_administering"), ("Unknown^Once", "nurse"),
                                     ("Unknown^Twice", "irradiation_authorizing")])
    _name(study, DoseObject.objects.get(study=study), [("TWICE, Unknown", "")], source="header_operator")
    assert participations_sync_from_registry(study_ids=[study.pk])["queued"] == 4
    assert {u.normalised: u.occurrences for u in UnmatchedName.objects.all()} == {"twice unknown": 3, "once unknown": 1}
    assert sorted(PendingParticipation.objects.filter(unmatched__normalised="twice unknown")
                  .values_list("role", "source", "raw_name")) == [
        ("", "header_operator", "TWICE, Unknown"), ("", "rdsr", "Unknown^Twice"), ("authorizing", "rdsr", "Unknown^Twice")]
