"""What tests/web/test_permissions.py does not cover: that its matrix really spans every URL x every role
(incl. a second patient), Django's admin, token authentication, inactive users and unsafe HTTP methods."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from dosereg.access import roles
from tests.web import test_permissions as P


def test_the_matrix_spans_every_url_and_every_role():
    assert P.discovered_names() == set(P.EXPECT)  # (also asserted there; here it guards the next lines)
    assert set(P.ROLES) == {"anonymous", *roles.ALL_ROLES, "patient2"}, "every role, a second patient, anonymous"
    for name, (method, _key, _query, expect) in P.EXPECT.items():
        assert set(expect) == set(P.ROLES), f"{name}: expectations for {set(P.ROLES) - set(expect)} missing"
    api = {n for n in P.EXPECT if n.startswith("web:api_")}
    assert len(api) >= 10 and all(P.EXPECT[n][3]["anonymous"] in (401, 400) for n in api), "the API never redirects"
    # every object-level URL is checked against patient A's object, so patient2 (patient B) must be refused
    for name, (_m, key, _q, expect) in P.EXPECT.items():
        if key in ("patient_a", "study_a", "fhir") and expect["patient"] == 200:
            assert expect["patient2"] == 404, name


def _admin_urls():
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        urls.append(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist"))
    return urls


def test_django_admin_is_for_admins_only(web_data):
    d = web_data
    urls = _admin_urls()
    assert len(urls) > 5
    failures = []
    for role in P.ROLES:
        c = Client()
        if role != "anonymous":
            c.force_login(d.users[role])
        for url in urls:
            r = c.get(url)
            if role == "admin":
                ok = r.status_code == 200
            else:  # never the page: a redirect to the login page
                ok = r.status_code == 302 and "/login/" in r["Location"]
            if not ok:
                failures.append(f"{role} {url}: {r.status_code}")
    assert not failures, "\n".join(failures)


def _api_urls(d):
    sa, a = d.studies["a_angio"].pk, d.patients["a"].pk
    return {
        "list": [reverse("web:api_studies"), reverse("web:api_events"), reverse("web:api_patients"),
                 reverse("web:api_fhir_search") + f"?patient={a}"],
        "own_a": [reverse("web:api_study", kwargs={"pk": sa}), reverse("web:api_study_events", kwargs={"pk": sa}),
                  reverse("web:api_patient", kwargs={"pk": a}),
                  reverse("web:api_fhir_observation", kwargs={"obs_id": f"dose-summary-{sa}"})],
        "clinical": [reverse("web:api_alerts")],
    }


def test_token_authentication_follows_the_same_matrix(web_data):
    d = web_data
    urls = _api_urls(d)
    failures = []
    for role in ("rso", "physicist", "staff", "patient", "patient2", "admin"):
        token, _ = Token.objects.get_or_create(user=d.users[role])
        c = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
        for kind, group in urls.items():
            for url in group:
                got = c.get(url).status_code
                if role in ("rso", "physicist", "admin"):
                    want = 200
                elif role == "staff":
                    want = 403
                elif kind == "clinical":
                    want = 403
                elif kind == "own_a":
                    want = 200 if role == "patient" else 404
                else:
                    want = 200
                if got != want:
                    failures.append(f"{role} {url}: {got}, expected {want}")
    for bad in ("Token not-a-token", "Token ", "Bearer abc", f"Token {'x' * 5000}"):
        got = Client(HTTP_AUTHORIZATION=bad).get(reverse("web:api_studies")).status_code
        if got != 401:
            failures.append(f"{bad[:20]!r}: {got}, expected 401")
    assert not failures, "\n".join(failures)


def test_patient2_token_list_endpoints_hold_only_patient2_rows(web_data):
    d = web_data
    token, _ = Token.objects.get_or_create(user=d.users["patient2"])
    c = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    b = d.patients["b"].pk
    rows = c.get(reverse("web:api_studies") + "?limit=1000").json()["results"]
    assert rows and {r["patient"] for r in rows} == {b}
    assert [p["id"] for p in c.get(reverse("web:api_patients")).json()["results"]] == [b]
    assert c.get(reverse("web:api_fhir_search") + f"?patient={d.patients['a'].pk}").json()["total"] == 0


def test_inactive_users_lose_access_at_once(web_data):
    d = web_data
    user = d.users["rso"]
    token, _ = Token.objects.get_or_create(user=user)
    c = Client()
    c.force_login(user)
    assert c.get(reverse("web:dashboard")).status_code == 200
    user.is_active = False
    user.save(update_fields=["is_active"])
    r = c.get(reverse("web:dashboard"))
    assert r.status_code == 302 and "/login/" in r["Location"]
    assert Client(HTTP_AUTHORIZATION=f"Token {token.key}").get(reverse("web:api_studies")).status_code == 401


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_unsafe_methods_are_refused_everywhere(web_data, method):
    """Nothing in the web app or API is writable through PUT/PATCH/DELETE, whatever the role."""
    from tests.web.test_permissions import _kwargs

    from dosereg.exposure.models import Alert

    d = web_data
    alert = Alert.objects.filter(patient=d.patients["a"]).first()
    c = Client()
    c.force_login(d.users["admin"])
    failures = []
    for name, (_m, key, query, _e) in P.EXPECT.items():
        if name in ("web:logout", "ops:health", "web:portal_invite"):
            continue
        url = reverse(name, kwargs=_kwargs(key, d, alert.pk))
        got = getattr(c, method)(url, data="{}", content_type="application/json").status_code
        if name in ("web:home", "web:login", "admin_login") and got == 302:
            continue  # a signed-in user is sent on to their home page whatever the method: nothing changes
        if got not in (405, 403):
            failures.append(f"{method.upper()} {name}: {got}")
    assert not failures, "\n".join(failures)
