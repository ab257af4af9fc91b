"""dosereg/web/params.py: the one place query parameters are validated (issue 7), and the edges of the
calendar and the id range that the bad-input suite does not reach."""
from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from dosereg.web import params
from tests.web.conftest import _fast_hasher, web_data  # noqa: F401 (fixtures)


@pytest.mark.parametrize("raw, expected", [(None, None), ("", None), (" 42 ", 42), ("42\x00", 42), (str(params.MAX_ID), params.MAX_ID)])
def test_parse_int_accepts(raw, expected):
    assert params.parse_int(raw, "n") == expected


@pytest.mark.parametrize("raw", ["abc", "1e5", "1_000", "٣", "0", "-1", str(params.MAX_ID + 1), "9" * 30, "1.0"])
def test_parse_int_refuses_with_the_parameter_named(raw):
    with pytest.raises(params.InvalidParameter) as exc:
        params.parse_int(raw, "device")
    assert exc.value.name == "device" and exc.value.message


@pytest.mark.parametrize("raw", ["2025-02-30", "2025-13-01", "0000-00-00", "0001-01-01", "9999-12-31", "notadate", "2025-1-1x"])
def test_parse_date_refuses(raw):
    with pytest.raises(params.InvalidParameter):
        params.parse_date(raw, "since")


@pytest.mark.parametrize("raw", ["2025-02-30", "2025-01-01T25:99", "2025-01-01T10:00+99:00", "0001-01-01", "9999-12-31T23:59",
                                 "xx", "ge2025-01-01"])
def test_parse_datetime_refuses(raw):
    with pytest.raises(params.InvalidParameter):
        params.parse_datetime(raw, "until")


def test_parse_datetime_is_aware_and_keeps_an_explicit_offset():
    assert params.parse_datetime("2025-03-01", "d").tzinfo is not None
    assert params.parse_datetime("2025-03-01T10:00:00+02:00", "d").utcoffset().total_seconds() == 7200


def test_clean_text_and_ip():
    assert params.clean_text("  PW\x001\x00 ", max_length=3) == "PW1"
    assert params.parse_ip(" 10.0.0.1 ", "ip") == "10.0.0.1"
    assert params.parse_ip("2001:DB8::1", "ip") == "2001:db8::1"
    for bad in ("1" * 500, "10.0.0.256", "10.0.0.1/24", "x\x00"):
        with pytest.raises(params.InvalidParameter):
            params.parse_ip(bad, "ip")


def test_lenient_query_params_ignore_and_report():
    from django.http import QueryDict

    p = params.QueryParams(QueryDict("device=abc&since=2025-02-30&ids=1&ids=x&ids=3"), strict=False)
    assert p.int("device") is None and p.date("since") is None and p.ints("ids") == [1, 3]
    assert set(p.errors) == {"device", "since", "ids"} and len(p.messages()) == 3
    with pytest.raises(params.InvalidParameter):
        params.QueryParams(QueryDict("device=abc"), strict=True).int("device")


def test_id_converter_bounds():
    c = params.IdConverter()
    assert c.to_python("1") == 1 and c.to_python(str(params.MAX_ID)) == params.MAX_ID
    for bad in ("0", str(params.MAX_ID + 1)):
        with pytest.raises(ValueError):
            c.to_python(bad)


def _get(c: Client, url: str, method: str = "get", **kw):
    sid = transaction.savepoint()
    resp = getattr(c, method)(url, **kw)
    transaction.savepoint_rollback(sid) if resp.status_code >= 500 else transaction.savepoint_commit(sid)
    return resp


def test_edges_of_the_calendar_and_odd_bodies_are_never_500(web_data):
    d = web_data
    rso, phys, admin = Client(raise_request_exception=False), Client(raise_request_exception=False), Client(raise_request_exception=False)
    rso.force_login(d.users["rso"])
    phys.force_login(d.users["physicist"])
    admin.force_login(d.users["admin"])
    a = d.patients["a"].pk
    cases = [
        (phys, reverse("web:protocol_audit") + "?until=9999-12-31&since=0001-01-01", {200}),
        (phys, reverse("web:fluoro_technique") + "?until=9999-12-31", {200}),
        (phys, reverse("web:protocol_export", kwargs={"kind": "summary", "fmt": "csv"}) + "?until=9999-12-31", {400}),
        (phys, reverse("web:protocol_export", kwargs={"kind": "summary", "fmt": "csv"}) + "?device=abc", {400}),
        (phys, reverse("web:protocol_distribution") + "?quantity=dap_total_gy_cm2&std=abc", {400}),
        (rso, reverse("web:api_studies") + "?since=0001-01-01", {400}),
        (rso, reverse("web:api_studies") + "?until=9999-12-31T23:59:59-12:00", {400}),
        (rso, reverse("web:api_studies") + "?since=2025-01-01T10:00:00%2B02:00", {200}),
        (rso, reverse("web:api_fhir_search") + f"?patient={a}&date=ge0001-01-01", {400}),
        (rso, reverse("web:api_fhir_search") + f"?patient={a}&date=ge", {400}),
        (rso, reverse("web:api_fhir_search") + "?subject=Patient/x%00", {400}),
        (rso, reverse("web:api_alerts") + "?status=open%00", {200}),
        (rso, reverse("web:api_events") + "?study=%00", {200, 400, 404}),
        (admin, reverse("web:audit_log") + "?until=9999-12-31T23:59:59%2B14:00&object_id=%00&action=%00", {200}),
        (admin, reverse("web:audit_log") + "?ip=10.0.0.1&patient=0&before=abc", {200}),
    ]
    failures = []
    for c, url, allowed in cases:
        r = _get(c, url)
        if r.status_code not in allowed:
            failures.append(f"GET {url} -> {r.status_code} (expected {sorted(allowed)})")
    anon = Client(raise_request_exception=False)
    for method, url, kw, allowed in [
        ("post", reverse("web:api_token"), {"data": {"username": "rso\x00", "password": "x"}, "content_type": "application/json"}, {400}),
        ("post", reverse("web:api_token"), {"data": "[1, 2]", "content_type": "application/json"}, {400}),
        ("post", reverse("web:login"), {"data": {"username": "rso\x00", "password": "x"}}, {200}),
    ]:
        r = _get(anon, url, method, **kw)
        if r.status_code not in allowed:
            failures.append(f"{method.upper()} {url} {kw} -> {r.status_code} (expected {sorted(allowed)})")
    r = _get(rso, reverse("web:api_alert_action", kwargs={"pk": 1, "action": "follow_up"}), "post",
             data="[1]", content_type="application/json")
    if r.status_code not in (400, 404):
        failures.append(f"POST alert action with a JSON array -> {r.status_code}")
    assert not failures, "\n".join(failures)


def test_ignored_page_filters_are_named_on_the_page(web_data):
    c = Client()
    c.force_login(web_data.users["admin"])
    r = c.get(reverse("web:audit_log") + "?ip=" + "1" * 50 + "&since=garbage")
    assert r.status_code == 200
    assert b"filter &#x27;ip&#x27; ignored" in r.content and b"filter &#x27;since&#x27; ignored" in r.content
    c.force_login(web_data.users["physicist"])
    r = c.get(reverse("web:protocol_audit") + "?device=abc&until=2025-02-30")
    assert r.status_code == 200
    assert b"filter &#x27;device&#x27; ignored" in r.content and b"filter &#x27;until&#x27; ignored" in r.content


def test_reprocess_with_only_invalid_ids_reprocesses_nothing(web_data, monkeypatch):
    from dosereg.web import services

    calls = []
    monkeypatch.setattr(services, "quarantine_reprocess", lambda *, ids=None, scope=None: calls.append(ids) or 0)
    c = Client()
    c.force_login(web_data.users["rso"])
    r = c.post(reverse("web:quarantine_reprocess"), {"ids": ["abc", "9" * 30]}, HTTP_X_REQUESTED_WITH="fetch")
    assert r.status_code == 400 and r.json()["ok"] is False and calls == []
    r = c.post(reverse("web:quarantine_reprocess"), {"ids": ["abc", "7"]}, HTTP_X_REQUESTED_WITH="fetch")
    assert r.status_code == 200 and calls == [[7]]
    r = c.post(reverse("web:quarantine_reprocess"), {}, HTTP_X_REQUESTED_WITH="fetch")
    assert r.status_code == 200 and calls[-1] is None  # nothing selected: all of the quarantine
