from __future__ import annotations

import pytest

from .data import PASSWORD, build_registry, make_users


@pytest.fixture(autouse=True)
def _fast_hasher(settings, tmp_path):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_CLASSES": []}


@pytest.fixture
def web_data(db, tmp_path, django_capture_on_commit_callbacks):
    # run the on-commit hooks (exposure recompute, alerts) as a real ingest would
    with django_capture_on_commit_callbacks(execute=True):
        data = build_registry(tmp_path)
    return make_users(data)


@pytest.fixture
def site_data(web_data, tmp_path, django_capture_on_commit_callbacks):
    """Two more sites (A, B) with their own devices, patients, pregnancy alerts and one RSO each (site_data.py)."""
    from .site_data import build_two_sites, find_alerts, make_site_users

    with django_capture_on_commit_callbacks(execute=True):
        sites = build_two_sites(tmp_path)
    return make_site_users(find_alerts(sites))


@pytest.fixture
def login(client):
    """login(role_or_user) -> the test client signed in (force_login: no lockout noise)."""

    def _login(user):
        client.logout()
        if user is not None:
            client.force_login(user)
        return client

    return _login


__all__ = ["PASSWORD"]
