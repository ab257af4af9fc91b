from __future__ import annotations

import pytest

from tests.exposure.conftest import import_file, rso_users, spool  # noqa: F401  (fixtures)
from tests.notifications.smtp import smtp_server  # noqa: F401  (fixture)


@pytest.fixture
def rso(db):
    from dosereg.web.services import user_create

    return user_create(username="case-rso", password="x-case-pass-1", role="rso", email="case-rso@hospital.test")


@pytest.fixture
def physicist(db):
    from dosereg.web.services import user_create

    return user_create(username="case-phys", password="x-case-pass-2", role="physicist")
