"""The same dosimetry file imported twice at once: one import wins, the other changes nothing."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from dosereg.staff.dosimetry.badges import import_badge_csv
from dosereg.staff.models import DosimeterReading, DosimetryImport, StaffAlert
from tests.conftest import require


@pytest.mark.django_db(transaction=True)
def test_concurrent_imports_of_one_file(people, badge_file):
    # SQLite's in-memory shared-cache test database locks whole tables across threads
    require(connection.vendor != "sqlite", "PostgreSQL (DATABASE_URL) for concurrent imports")
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(import_badge_csv(badge_file).status)
        except Exception as exc:  # reported below
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(results) == ["already_imported", "imported"]
    assert DosimetryImport.objects.count() == 1 and DosimeterReading.objects.count() == 24
    assert StaffAlert.objects.filter(staff=people["anna"]).count() == 5
