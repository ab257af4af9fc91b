"""Login throttling beyond tests/web/test_audit.py (lockout per user name and address, shared with the token
endpoint): failures never lock out a correct password from another address or for another user name (issue
#18), no user enumeration, no X-Forwarded-For spoofing (the last trusted proxy hop is used), the admin login,
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


def test_failures_from_one_address_never_lock_out_a_correct_password(web_data, settings):
    """Issue #18: 30 failed logins from one address (behind a proxy: everyone) locked every user out, correct
    passwords included. Now the lock is per user name AND address: spraying locks no one else."""
    settings.DOSEREG_LOGIN_MAX_FAILURES = 5
    settings.DOSEREG_LOGIN_MAX_FAILURES_PER_IP = 30
    c = Client()
    for i in range(40):  # password spraying from one address, one try per user name, past the per-address count
        assert _post(c, f"user{i}", "Winter2025!").status_code == 200
    assert AuditEvent.objects.filter(action="login_failed", ip="10.20.30.40").count() == 40
    r = _post(c, "t-rso", PASSWORD)  # the same address, a real user with the right password
    assert r.status_code == 302 and c.session["_auth_user_id"] == str(web_data.users["rso"].pk)
    r = Client().post(reverse("web:api_token"), {"username": "t-physicist", "password": PASSWORD},
                      REMOTE_ADDR="10.20.30.40")
    assert r.status_code == 200 and r.json()["token"]


def test_lock_is_per_user_name_and_address(web_data, settings):
    settings.DOSEREG_LOGIN_MAX_FAILURES = 3
    for _ in range(3):  # an attacker guesses t-rso's password from one address
        assert _post(Client(), "t-rso", "guess", ip="198.51.100.9").status_code == 200
    attacker = Client()
    r = _post(attacker, "t-rso", PASSWORD, ip="198.51.100.9")  # that pair is locked, even the right password
    assert r.status_code == 429 and "_auth_user_id" not in attacker.session
    assert Client().post(reverse("web:api_token"), {"username": "t-rso", "password": PASSWORD},
                         REMOTE_ADDR="198.51.100.9").status_code == 429
    user = Client()  # the real user from their own address signs in
    assert _post(user, "t-rso", PASSWORD, ip="10.1.2.3").status_code == 302 and "_auth_user_id" in user.session
    other = Client()  # another user behind the attacker's address signs in
    assert _post(other, "t-physicist", PASSWORD, ip="198.51.100.9").status_code == 302


def test_x_forwarded_for_is_not_trusted_by_default(web_data, settings):
    settings.DOSEREG_LOGIN_MAX_FAILURES = 4
    c = Client()
    for i in range(4):
        _post(c, "t-rso", "x", HTTP_X_FORWARDED_FOR=f"203.0.113.{i}")
    assert _post(c, "t-rso", PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.7").status_code == 429
    assert set(AuditEvent.objects.filter(action="login_failed").values_list("ip", flat=True)) == {"10.20.30.40"}


def test_behind_a_trusted_proxy_the_last_hop_is_the_client(web_data, settings):
    """A proxy that appends: X-Forwarded-For = "<whatever the client sent>, <the client's address>". The first
    hop is client-controlled: rotating it must neither dodge the lock nor be recorded as the address."""
    settings.DOSEREG_TRUST_X_FORWARDED_FOR = True
    settings.DOSEREG_TRUSTED_PROXY_COUNT = 1
    settings.DOSEREG_LOGIN_MAX_FAILURES = 3
    proxy = "10.0.0.254"
    for i in range(3):
        r = _post(Client(), "t-rso", "guess", ip=proxy, HTTP_X_FORWARDED_FOR=f"203.0.113.{i}, 192.0.2.66")
        assert r.status_code == 200
    assert set(AuditEvent.objects.filter(action="login_failed").values_list("ip", flat=True)) == {"192.0.2.66"}
    r = _post(Client(), "t-rso", PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="203.0.113.99, 192.0.2.66")
    assert r.status_code == 429  # a new spoofed first hop does not dodge the lock
    r = _post(Client(), "t-rso", PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="192.0.2.66, 192.0.2.10")
    assert r.status_code == 302  # the real user behind the same proxy (claiming the attacker's address) signs in
    assert AuditEvent.objects.filter(action="login", username="t-rso").latest("pk").ip == "192.0.2.10"


def test_two_trusted_proxies_use_the_second_hop_from_the_end(web_data, settings):
    from django.test import RequestFactory

    from dosereg.audit.services import client_ip

    settings.DOSEREG_TRUST_X_FORWARDED_FOR = True
    settings.DOSEREG_TRUSTED_PROXY_COUNT = 2
    req = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 192.0.2.7, 10.0.0.1")
    assert client_ip(req) == "192.0.2.7"
    req = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.8")  # fewer hops
    assert client_ip(req) == "192.0.2.8"
    settings.DOSEREG_TRUST_X_FORWARDED_FOR = False
    assert client_ip(req) == "10.0.0.2"


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
    assert _post(Client(), "no-such-user", "wrong", ip="10.0.0.2").status_code == 429


def test_admin_login_shares_the_lockout(web_data, settings):
    settings.DOSEREG_LOGIN_MAX_FAILURES = 2
    c = Client()
    url = reverse("admin_login")
    for _ in range(2):
        assert _post(c, "t-admin", "wrong", url=url).status_code == 200
    assert _post(c, "t-admin", PASSWORD, url=url).status_code == 429
    assert _post(Client(), "t-admin", PASSWORD).status_code == 429  # the web login too (same address)
    assert _post(Client(), "t-admin", PASSWORD, ip="10.99.0.1").status_code == 302  # another address: not locked


def test_token_endpoint_is_rate_limited(web_data, settings):
    """20/min per user name and client on /api/v1/auth/token/ (DRF throttle), independent of the lockout
    counts; another user name from the same address is not throttled."""
    settings.DOSEREG_LOGIN_MAX_FAILURES = 1000
    settings.DOSEREG_LOGIN_MAX_FAILURES_PER_IP = 1000
    cache.clear()
    c = Client()
    codes = [c.post(reverse("web:api_token"), {"username": "t-rso", "password": "wrong"},
                    REMOTE_ADDR="10.55.0.1").status_code for _ in range(22)]
    assert codes[:20] == [400] * 20 and codes[20:] == [429, 429], codes
    r = c.post(reverse("web:api_token"), {"username": "t-physicist", "password": PASSWORD}, REMOTE_ADDR="10.55.0.1")
    assert r.status_code == 200
    # a client-chosen X-Forwarded-For does not reset the count (not trusted by default)
    r = c.post(reverse("web:api_token"), {"username": "t-rso", "password": "wrong"}, REMOTE_ADDR="10.55.0.1",
               HTTP_X_FORWARDED_FOR="203.0.113.5")
    assert r.status_code == 429
    cache.clear()
