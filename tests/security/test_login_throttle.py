"""Login throttling beyond tests/web/test_audit.py (per-username lockout, shared with the token endpoint):
the per-IP lockout across usernames, no user enumeration, no X-Forwarded-For spoofing, the admin login,
and the token endpoint's rate limit."""
from __future__ import annotations

from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from dosereg.audit.models import AuditEvent

from .conftest import web_data  # noqa: F401

PASSWORD = "web-test-pass-1"


def _post(c, username, password, ip="10.20.30.40", url=None, **extra):
    return c.post(url or reverse("web:login"), {"username": username, "password": password}, REMOTE_ADDR=ip, **extra)


def test_per_ip_lockout_across_usernames(web_data, settings):
    settings.DOSEREG_LOGIN_MAX_FAILURES = 100
    settings.DOSEREG_LOGIN_MAX_FAILURES_PER_IP = 6
    c = Client()
    for i in range(6):  # password spraying: one try per username
        assert _post(c, f"user{i}", "Winter2025!").status_code == 200
    r = _post(c, "t-rso", PASSWORD)  # right password, locked IP
    assert r.status_code == 429 and "_auth_user_id" not in c.session
    assert _post(Client(), "t-rso", PASSWORD, ip="10.20.30.41").status_code == 302  # another IP is unaffected


def test_x_forwarded_for_is_not_trusted_by_default(web_data, settings):
    settings.DOSEREG_LOGIN_MAX_FAILURES = 100
    settings.DOSEREG_LOGIN_MAX_FAILURES_PER_IP = 4
    c = Client()
    for i in range(4):
        _post(c, f"spray{i}", "x", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
    assert _post(c, "t-rso", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429
    assert set(AuditEvent.objects.filter(action="login_failed").values_list("ip", flat=True)) == {"10.20.30.40"}


def test_unknown_users_and_wrong_passwords_look_the_same_and_both_lock(web_data, settings):
    settings.DOSEREG_LOGIN_MAX_FAILURES = 3
    known = _post(Client(), "t-physicist", "wrong", ip="10.0.0.1")
    unknown = _post(Client(), "no-such-user", "wrong", ip="10.0.0.2")
    assert known.status_code == unknown.status_code == 200
    strip = lambda r: r.content.decode().replace("t-physicist", "U").replace("no-such-user", "U")  # noqa: E731
    import re

    norm = lambda s: re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", s)  # noqa: E731
    assert norm(strip(known)) == norm(strip(unknown))  # no user enumeration
    for _ in range(2):
        _post(Client(), "no-such-user", "wrong", ip="10.0.0.2")
    assert _post(Client(), "no-such-user", "wrong", ip="10.0.0.3").status_code == 429


def test_admin_login_shares_the_lockout(web_data, settings):
    settings.DOSEREG_LOGIN_MAX_FAILURES = 2
    c = Client()
    url = reverse("admin_login")
    for _ in range(2):
        assert _post(c, "t-admin", "wrong", url=url).status_code == 200
    assert _post(c, "t-admin", PASSWORD, url=url).status_code == 429
    assert _post(Client(), "t-admin", PASSWORD, ip="10.99.0.1").status_code == 429  # the web login too


def test_token_endpoint_is_rate_limited(web_data, settings):
    """20/min per client on /api/v1/auth/token/ (DRF throttle), independent of the lockout counts."""
    settings.DOSEREG_LOGIN_MAX_FAILURES = 1000
    settings.DOSEREG_LOGIN_MAX_FAILURES_PER_IP = 1000
    cache.clear()
    c = Client()
    codes = [c.post(reverse("web:api_token"), {"username": "t-rso", "password": "wrong"},
                    REMOTE_ADDR="10.55.0.1").status_code for _ in range(22)]
    assert codes[:20] == [400] * 20 and codes[20:] == [429, 429], codes
    cache.clear()
