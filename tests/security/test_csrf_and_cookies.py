"""CSRF on every state-changing form and session-authenticated API call; cookie flags in development and
under DOSEREG_PRODUCTION=true."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.test import Client
from django.urls import reverse

from dosereg.registry.models import DoseObject
from tests.conftest import REPO

from .conftest import web_data  # noqa: F401

PASSWORD = "web-test-pass-1"


def _state(d):
    from dosereg.exposure.models import Alert
    from dosereg.protocols.models import DRLSet, StandardName
    from dosereg.web.models import PatientAccount

    return {
        "alerts": sorted(Alert.objects.values_list("pk", "status")),
        "quarantine": sorted(DoseObject.objects.values_list("pk", "status", "enqueued_at")),
        "accounts": PatientAccount.objects.count(),
        "drl_sets": DRLSet.objects.count(),
        "names": StandardName.objects.count(),
    }


def _posts(d, alert_id):
    """(role allowed to post, url, data): every POST form of the web app and the session-authenticated API."""
    return [
        ("rso", reverse("web:alert_action", kwargs={"alert_id": alert_id, "action": "follow_up"}), {"note": "csrf"}),
        ("rso", reverse("web:quarantine_reprocess"), {}),
        ("rso", reverse("web:patient_invite", kwargs={"pk": d.patients["c"].pk}), {}),
        ("physicist", reverse("web:protocol_names"), {"name": "CT:CT Chest", "new_standard_name": "X", "confirm": "yes"}),
        ("physicist", reverse("web:drl_sets"), {"set-name": "CSRF set", "set-citation": "x"}),
        ("rso", reverse("web:api_alert_action", kwargs={"pk": alert_id, "action": "follow_up"}), {"note": "csrf"}),
        ("rso", reverse("web:logout"), {}),
    ]


def test_every_post_needs_the_csrf_token(web_data):
    from dosereg.exposure.models import Alert

    d = web_data
    alert = Alert.objects.filter(patient=d.patients["a"]).first()
    failures = []
    for role, url, data in _posts(d, alert.pk):
        c = Client(enforce_csrf_checks=True)
        c.force_login(d.users[role])
        before = _state(d)
        r = c.post(url, data)
        if r.status_code != 403:
            failures.append(f"{url} without token: {r.status_code}")
        if _state(d) != before:
            failures.append(f"{url} without token changed state")
        if "logout" in url and "_auth_user_id" not in c.session:
            failures.append("logout without token signed the user out")
        # a forged token is no better than none
        r = c.post(url, data, HTTP_X_CSRFTOKEN="A" * 64)
        if r.status_code != 403:
            failures.append(f"{url} with a forged token: {r.status_code}")
        # with the real token (as the pages send it) the same request goes through
        c.get(reverse("web:dashboard"))  # a page with forms sets the CSRF cookie
        token = c.cookies["csrftoken"].value
        r = c.post(url, data, HTTP_X_CSRFTOKEN=token, HTTP_X_REQUESTED_WITH="fetch")
        if r.status_code == 403:
            failures.append(f"{url} with the token: still 403")
    assert not failures, "\n".join(failures)


def test_login_and_invitation_forms_need_the_csrf_token(web_data):
    from dosereg.web.services import patient_invitation_issue

    d = web_data
    c = Client(enforce_csrf_checks=True)
    r = c.post(reverse("web:login"), {"username": "t-rso", "password": PASSWORD})
    assert r.status_code == 403 and "_auth_user_id" not in c.session
    _, token = patient_invitation_issue(patient=d.patients["c"], issued_by=d.users["rso"])
    r = c.post(reverse("web:portal_invite", kwargs={"token": token}),
               {"birth_date": "1990-03-03", "username": "gus", "password": "Sup3r-secret-pw", "password2": "Sup3r-secret-pw"})
    assert r.status_code == 403
    from django.contrib.auth.models import User

    assert not User.objects.filter(username="gus").exists()


def test_token_authenticated_api_needs_no_csrf_but_session_api_does(web_data):
    """CSRF protects cookies; a bearer token is not sent by browsers on their own."""
    from rest_framework.authtoken.models import Token

    from dosereg.exposure.models import Alert

    d = web_data
    alert = Alert.objects.filter(patient=d.patients["a"]).first()
    url = reverse("web:api_alert_action", kwargs={"pk": alert.pk, "action": "follow_up"})
    token, _ = Token.objects.get_or_create(user=d.users["rso"])
    r = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Token {token.key}").post(url, {"note": "via token"})
    assert r.status_code == 200, r.content


def _login(client, **extra):
    return client.post(reverse("web:login"), {"username": "t-rso", "password": PASSWORD}, **extra)


def test_cookie_flags_in_development(web_data):
    c = Client()
    c.get(reverse("web:login"))
    csrf = c.cookies["csrftoken"]
    r = _login(c)
    assert r.status_code == 302
    s = r.cookies["sessionid"]
    assert s["httponly"] is True and s["samesite"] == "Lax"
    assert csrf["httponly"] is True and csrf["samesite"] == "Lax"
    assert not s["max-age"] and not s["expires"]  # a browser-session cookie (SESSION_EXPIRE_AT_BROWSER_CLOSE)


def test_cookie_flags_in_production(web_data, settings):
    """The values DOSEREG_PRODUCTION=true sets (read from a fresh process), applied here: Secure cookies."""
    code = ("from django.conf import settings as s; "
            "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.CSRF_COOKIE_HTTPONLY, "
            "s.SESSION_COOKIE_SAMESITE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS >= 31536000, s.DEBUG)")
    env = dict(os.environ, DOSEREG_PRODUCTION="true", SECRET_KEY="k" * 50, ALLOWED_HOSTS="x",
               DJANGO_SETTINGS_MODULE="dosereg.settings")
    env.pop("DEBUG", None)
    out = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + code], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True", "True", "True", "Lax", "True", "True", "False"], out.stdout
    settings.SESSION_COOKIE_SECURE = settings.CSRF_COOKIE_SECURE = True
    c = Client()
    c.get(reverse("web:login"), secure=True)
    r = _login(c, secure=True)
    assert r.status_code == 302
    assert r.cookies["sessionid"]["secure"] is True and c.cookies["csrftoken"]["secure"] is True


def test_production_refuses_to_start_without_a_secret_key():
    env = dict(os.environ, DOSEREG_PRODUCTION="true", ALLOWED_HOSTS="x", DJANGO_SETTINGS_MODULE="dosereg.settings")
    env.pop("SECRET_KEY", None)
    out = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "SECRET_KEY must be set in production" in out.stderr


def test_session_is_rotated_at_login_and_gone_at_logout(web_data):
    c = Client()
    c.get(reverse("web:login"))
    c.session.save()
    before = c.cookies.get("sessionid").value if c.cookies.get("sessionid") else None
    _login(c)
    after = c.cookies["sessionid"].value
    assert after and after != before  # no session fixation
    c.get(reverse("web:dashboard"))
    token = c.cookies["csrftoken"].value
    c.post(reverse("web:logout"), HTTP_X_CSRFTOKEN=token)
    r = c.get(reverse("web:dashboard"))
    assert r.status_code == 302 and "/login/" in r["Location"]
    # the old cookie replayed is worthless
    replay = Client()
    replay.cookies["sessionid"] = after
    assert replay.get(reverse("web:dashboard")).status_code == 302


@pytest.mark.parametrize("header,value", [("X-Frame-Options", "DENY"), ("X-Content-Type-Options", "nosniff"),
                                          ("Referrer-Policy", "same-origin")])
def test_security_headers(web_data, header, value):
    c = Client()
    c.force_login(web_data.users["rso"])
    r = c.get(reverse("web:dashboard"))
    assert r[header] == value
    assert "Content-Security-Policy" in r
