"""Shared test helpers.

Tests that need a service (PostgreSQL, Redis, DCMTK, Chromium, the shared corpus)
skip on a laptop without it, and FAIL when CI=true: CI never skips silently.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
# One id per test run: its own PostgreSQL test database and its own broker keys, so two runs on one
# machine (two checkouts, a developer and CI) never drop each other's database or take each other's tasks.
RUN_ID = os.environ.setdefault("DOSEREG_TEST_RUN_ID", uuid.uuid4().hex[:10])
os.environ.setdefault("BROKER_KEY_PREFIX", f"dosereg-test-{RUN_ID}:")
# The processes tests start (web, worker, listener against the test PostgreSQL) are not production
# (dosereg.settings.PRODUCTION); the tests of the production mode set DOSEREG_PRODUCTION=true themselves.
os.environ.setdefault("DOSEREG_PRODUCTION", "false")
# The suite's RDSR fixtures carry fixed exam dates (the builder's default is 2026-03-02, the shared corpus is years
# old), which the default e-mail age limit (ALERT_NOTIFY_MAX_AGE_DAYS, 30 days) would silence more of every day
# the calendar moves on: the suite turns the limit off, here (_no_email_age_limit) and in the processes it starts
# (this environment variable). The default and the
# limit themselves are tested in tests/cases/test_cases.py (test_notify_age_limit_*).
os.environ.setdefault("ALERT_NOTIFY_MAX_AGE_DAYS", "0")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix) -> None:
    from django.conf import settings

    test = settings.DATABASES["default"].setdefault("TEST", {})
    if not test.get("NAME"):
        test["NAME"] = f"test_dosereg_{RUN_ID}"


def require(condition: bool, what: str, *, module: bool = False) -> None:
    """Skip (the test, or with ``module`` the whole module at import) when ``condition`` is false; under CI fail."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but is not available", pytrace=False)
    pytest.skip(f"{what} not available", allow_module_level=module)


def corpus_path() -> Path:
    return Path(os.environ.get("DOSEREG_CORPUS") or REPO.parent / "shared" / "rdsr")


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    path = corpus_path()
    require(path.is_dir(), f"the shared RDSR corpus ({path})")
    return path


@pytest.fixture(scope="session")
def corpus_files(corpus_dir) -> list[Path]:
    return sorted(corpus_dir.glob("*.dcm"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Expose each phase's report on the item (fixtures print process logs when the test failed)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _is_transactional(item) -> bool:
    marker = item.get_closest_marker("django_db")
    if marker is not None and (marker.kwargs.get("transaction") or (marker.args and marker.args[0])):
        return True
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & {"transactional_db", "live_server", "pg_url", "stack", "fault_stack"})


def pytest_collection_modifyitems(session, config, items):
    """Transactional tests flush every table when they end, including the rows that data migrations
    seed (role groups, alert rules, staff limits, DRL sets). So: run them last, and give each one
    serialized_rollback, which restores the seeded contents before it starts."""
    plain, transactional = [], []
    for item in items:
        if _is_transactional(item):
            item.add_marker(pytest.mark.django_db(transaction=True, serialized_rollback=True), append=False)
            transactional.append(item)
        else:
            plain.append(item)
    items[:] = plain + transactional


@pytest.fixture(autouse=True)
def _no_email_age_limit(settings):
    """The e-mail age limit off in this process too (its settings were read before this file set the environment
    variable at the top: see there)."""
    settings.ALERT_NOTIFY_MAX_AGE_DAYS = 0


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Per-process caches must not carry rows from one test's database into the next."""
    yield
    from dosereg.registry import device_resolution

    device_resolution._DEVICE_CACHE.clear()


_SERIALIZED_CONTENTS: dict[str, str] = {}


def _carry_serialized_contents() -> None:
    """Playwright's sync API (tests/web/test_browser.py) switches the test thread into a greenlet with its own
    context, and Django's ``connections`` is context-local: from then on the tests see a new connection
    object without the ``_test_serialized_contents`` captured when the test database was created.
    TransactionTestCase then neither restores the seeded rows nor inhibits post_migrate when it flushes
    (content types are re-created under new ids), and the next serialized restore fails on a duplicate
    content type. Give every connection object the contents the first one captured."""
    from django.db import connections

    for alias in connections:
        conn = connections[alias]
        data = getattr(conn, "_test_serialized_contents", None)
        if data is not None:
            _SERIALIZED_CONTENTS[alias] = data
        elif alias in _SERIALIZED_CONTENTS:
            conn._test_serialized_contents = _SERIALIZED_CONTENTS[alias]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    _carry_serialized_contents()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    _carry_serialized_contents()


@pytest.fixture(autouse=True)
def _sequences_follow_restored_rows(request):
    """A serialized restore inserts the seeded rows with their original ids but leaves PostgreSQL's
    sequences where a flush left them; the next insert could then reuse an id (duplicate key). Move
    every sequence past the restored rows."""
    if not _is_transactional(request.node):
        yield
        return
    request.getfixturevalue("transactional_db")
    from django.apps import apps
    from django.core.management.color import no_style
    from django.db import connection

    if connection.vendor == "postgresql":
        statements = connection.ops.sequence_reset_sql(no_style(), apps.get_models())
        with connection.cursor() as cur:
            cur.execute(";".join(statements))
    yield
