from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from dicom_listener.spool import Spool
from dosereg.exposure.constants import RSO_GROUP


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


@pytest.fixture
def rso_users(db):
    group, _ = Group.objects.get_or_create(name=RSO_GROUP)
    users = []
    for name in ("rso1", "rso2"):
        u = User.objects.create_user(name, email=f"{name}@hospital.test")
        u.groups.add(group)
        users.append(u)
    return users


@pytest.fixture
def import_file(spool, django_capture_on_commit_callbacks):
    """Import through the registry pipeline and run the on-commit callbacks (signal → recompute → e-mail)."""
    from dosereg.pipeline.flow import file_import

    def run(path):
        with django_capture_on_commit_callbacks(execute=True):
            obj, outcome = file_import(path=path, spool=spool)
        return obj
    return run


from tests.notifications.smtp import smtp_server  # noqa: E402,F401  (fixture)
