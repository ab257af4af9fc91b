"""RSO site scoping (dosereg.access.scope): who gets which sites, what "at a site" means for studies, patients and
alerts, and that every selector behind the RSO's pages keeps to the sites with a fixed number of queries.
The URL x site matrix is in tests/security/test_site_scope_matrix.py."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dosereg.access.scope import EVERY_SITE, NO_SITE, SiteScope, normalise, scope_for
from dosereg.registry.models import Patient, Study
from dosereg.web import integrations, selectors, services

from .site_data import SITE_A, SITE_B


def _fresh(user):
    """The user as a new request sees it (roles and scope are cached on the user object)."""
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=user.pk)


def _scope(*names):
    return SiteScope(frozenset(normalise(n) for n in names), tuple(names))


# ---------------------------------------------------------------------------
# who sees which sites
# ---------------------------------------------------------------------------
def test_scope_for_each_kind_of_user(site_data, web_data, settings, django_assert_num_queries):
    d, w = site_data, web_data
    a = scope_for(_fresh(d.users["rso_a"]))
    assert a.sites == {normalise(SITE_A)} and a.names == (SITE_A.upper(),) and a.label == SITE_A.upper()
    for role in ("physicist", "admin"):
        assert scope_for(_fresh(w.users[role])) is EVERY_SITE
    for role in ("staff", "patient"):
        assert scope_for(_fresh(w.users[role])) is NO_SITE
    # an RSO without an assignment: every site by default, nothing when RSO_UNSCOPED_SEES_ALL is false
    settings.DOSEREG_RSO_UNSCOPED_SEES_ALL = True
    assert scope_for(_fresh(w.users["rso"])) is EVERY_SITE
    settings.DOSEREG_RSO_UNSCOPED_SEES_ALL = False
    assert scope_for(_fresh(w.users["rso"])) is NO_SITE
    # an explicit "all sites" wins over listed sites and over the setting
    services.site_assignment_set(user=w.users["rso"], sites=[SITE_B], all_sites=True)
    assert scope_for(_fresh(w.users["rso"])) is EVERY_SITE
    # an assignment without a site: nothing
    services.site_assignment_set(user=w.users["rso"], sites=[])
    assert scope_for(_fresh(w.users["rso"])).sites == frozenset()
    # physicists stay unscoped even with an assignment (and with the rso role as well)
    services.site_assignment_set(user=w.users["physicist"], sites=[SITE_A])
    from django.contrib.auth.models import Group

    w.users["physicist"].groups.add(Group.objects.get(name="rso"))
    assert scope_for(_fresh(w.users["physicist"])) is EVERY_SITE
    # one query for an RSO (after the roles), cached on the user for the rest of the request
    user = _fresh(d.users["rso_a"])
    from dosereg.access.roles import user_roles

    user_roles(user)
    with django_assert_num_queries(1):
        scope_for(user)
        scope_for(user)


def test_site_assignment_set_replaces_the_sites(site_data):
    user = site_data.users["rso_b"]
    services.site_assignment_set(user=user, sites=[SITE_A, f" {SITE_B} ", "", SITE_A])
    assert sorted(user.site_assignment.sites.values_list("institution", flat=True)) == sorted([SITE_A, SITE_B])
    services.site_assignment_set(user=user, sites=[SITE_B])
    assert list(user.site_assignment.sites.values_list("institution", flat=True)) == [SITE_B]
    assert scope_for(_fresh(user)).names == (SITE_B,)


# ---------------------------------------------------------------------------
# what is at a site
# ---------------------------------------------------------------------------
def test_studies_patients_and_alerts_at_a_site(site_data, web_data):
    from dosereg.exposure.models import Alert

    d = site_data
    a = _scope(SITE_A.lower() + "  ")
    assert set(Study.objects.filter(a.study_q())) == {d.studies["sa_rf"], d.studies["ab_a"]}
    assert set(Patient.objects.filter(a.patient_q())) == {d.patients["sa"], d.patients["ab"]}
    at_a = set(Alert.objects.filter(a.alert_q()))
    assert at_a == set(Alert.objects.filter(study__device__institution=SITE_A)) and d.alerts["sa_rf"] in at_a
    assert d.alerts["ab_b"] not in at_a  # patient ab is at A too, but this alert was raised by the study at B
    assert set(Study.objects.filter(EVERY_SITE.study_q())) == set(Study.objects.all())
    assert not Study.objects.filter(NO_SITE.study_q()).exists()
    assert not Patient.objects.filter(NO_SITE.patient_q()).exists()
    assert not Alert.objects.filter(NO_SITE.alert_q()).exists()
    assert a.device_ids() == {d.studies["sa_rf"].device_id} and EVERY_SITE.device_ids() is None
    assert NO_SITE.device_ids() == set()
    # an alert whose study row is gone counts where its patient is (ab: at A through ab_a)
    Alert.objects.filter(pk=d.alerts["ab_b"].pk).update(study=None)
    assert d.alerts["ab_b"] in set(Alert.objects.filter(a.alert_q()))
    # a study without a device is at no site
    Study.objects.filter(pk=d.studies["ab_a"].pk).update(device=None)
    assert set(Study.objects.filter(a.study_q())) == {d.studies["sa_rf"]}
    assert d.alerts["ab_b"] not in set(Alert.objects.filter(a.alert_q()))
    # a patient is at a site through a record merged into them
    b = _scope(SITE_B)
    assert d.patients["sa"] not in set(Patient.objects.filter(b.patient_q()))
    Patient.objects.filter(pk=d.patients["sb"].pk).update(merged_into=d.patients["sa"])
    assert d.patients["sa"] in set(Patient.objects.filter(b.patient_q()))


# ---------------------------------------------------------------------------
# selectors behind the pages
# ---------------------------------------------------------------------------
def test_patient_search_and_history_keep_to_the_sites(site_data):
    d = site_data
    a = _scope(SITE_A)
    found = {r["pk"]: r for r in selectors.patient_search(q="PS", scope=a)}
    assert set(found) == {d.patients["sa"].pk, d.patients["ab"].pk}
    assert found[d.patients["ab"].pk]["n_studies"] == 1  # the exam at A, not the one at B
    recent = {r["pk"] for r in selectors.patient_search(scope=a)}
    assert recent == {d.patients["sa"].pk, d.patients["ab"].pk}
    assert selectors.patient_search(q="PS", scope=NO_SITE) == []
    assert {r["pk"] for r in selectors.patient_search(q="PS")} == {p.pk for p in d.patients.values()}

    h = selectors.patient_history(patient=d.patients["ab"], scope=a)
    assert [s.pk for s in h["studies"]] == [d.studies["ab_a"].pk]
    assert [c["desc"] for c in h["chart"]] == ["Both-sites swallow at A"]
    assert h["other_site_studies"] == 1
    assert d.alerts["ab_b"].pk not in {x["id"] for x in h["alerts"]}
    # the cumulative totals are the patient's, over every site (what the alert levels are measured against)
    everything = selectors.patient_history(patient=d.patients["ab"])
    assert h["windows"] == everything["windows"] and everything["other_site_studies"] == 0
    assert {s.pk for s in everything["studies"]} == {d.studies["ab_a"].pk, d.studies["ab_b"].pk}
    assert d.alerts["ab_b"].pk in {x["id"] for x in everything["alerts"]}

    assert selectors.study_detail(study_pk=d.studies["sb_rf"].pk, scope=a) is None
    assert selectors.study_detail(study_pk=d.studies["sa_rf"].pk, scope=a)["study"] == d.studies["sa_rf"]


def test_dashboard_keeps_to_the_sites(site_data, web_data):
    from dosereg.cases import selectors as case_selectors, services as case_services
    from dosereg.cases.models import ACTIVE_STATUSES, Case

    d, w = site_data, web_data
    a = _scope(SITE_A)
    now = timezone.now()
    case_of = {label: d.alerts[label].case_link.case_id for label in ("sa_rf", "sb_rf", "ab_b")}

    ctx = selectors.dashboard(now=now, scope=a)
    assert "alerts" not in ctx and "follow_ups" not in ctx  # the worklist's top replaced the old alert list
    top = case_selectors.dashboard(scope=a)
    active_at_a = set(Case.objects.filter(site=normalise(SITE_A), status__in=ACTIVE_STATUSES).values_list("pk", flat=True))
    assert case_of["sa_rf"] in active_at_a and {r["id"] for r in top["rows"]} == active_at_a
    assert top["counts"]["total"] == len(active_at_a) and not {case_of["sb_rf"], case_of["ab_b"]} & active_at_a
    assert {s.pk for s in ctx["pregnancy"]} == {d.studies["sa_rf"].pk}
    top_patients = {p["patient_id"] for p in ctx["top_patients"]}
    assert top_patients and top_patients <= {d.patients["sa"].pk, d.patients["ab"].pk}
    device_a = d.studies["sa_rf"].device_id
    assert [t["id"] for t in ctx["trends"]["devices"]] == [device_a]
    assert [r["device"].pk for r in ctx["ingest"]["rows"]] == [device_a]
    assert ctx["ingest"]["unassigned_total"] == 0
    assert {v.device_id for v in ctx["ingest"]["new_versions"]} <= {device_a}
    assert ctx["quarantine"]["count"] == 0 and ctx["quarantine"]["objects"] == []  # the unreadable file has no site
    # follow-ups: a site-B follow-up is not listed, a site-A one is
    for label in ("sa_rf", "sb_rf"):
        case_services.case_follow_up(case_id=case_of[label], user=w.users["admin"], due=(now + timedelta(days=1)).date())
    assert [r["id"] for r in case_selectors.dashboard(scope=a)["due"]] == [case_of["sa_rf"]]
    # unscoped: everything
    full = case_selectors.dashboard(scope=EVERY_SITE)
    assert set(case_of.values()) <= {r["id"] for r in full["rows"]} | {r["id"] for r in full["due"]}
    assert selectors.dashboard(now=now, scope=EVERY_SITE)["quarantine"]["count"] == 1
    # nothing assigned: nothing shown
    empty, empty_top = selectors.dashboard(now=now, scope=NO_SITE), case_selectors.dashboard(scope=NO_SITE)
    assert not (empty_top["rows"] or empty_top["due"] or empty_top["counts"]["total"] or empty["top_patients"] or empty["pregnancy"]
                or empty["ingest"]["rows"] or empty["trends"]["devices"] or empty["quarantine"]["count"])


def test_alert_lists_and_actions_keep_to_the_sites(site_data, web_data):
    d = site_data
    a = _scope(SITE_A)
    ids = {x["id"] for x in integrations.alerts_api_list(status="all", scope=a)}
    assert d.alerts["sa_rf"].pk in ids and not ids & {d.alerts["sb_rf"].pk, d.alerts["ab_b"].pk}
    with pytest.raises(integrations.AlertNotFound):
        integrations.alert_transition(alert_id=d.alerts["sb_rf"].pk, action="acknowledge", user=d.users["rso_a"], scope=a)
    d.alerts["sb_rf"].refresh_from_db()
    assert d.alerts["sb_rf"].status == "open"
    done = integrations.alert_transition(alert_id=d.alerts["sa_rf"].pk, action="acknowledge", user=d.users["rso_a"], scope=a)
    assert done["status"] == "acknowledged"


def test_quarantine_reprocess_keeps_to_the_sites(site_data, web_data):
    assert services.quarantine_reprocess(scope=_scope(SITE_A)) == 0  # the unreadable file is at no site
    assert services.quarantine_reprocess(scope=EVERY_SITE) == 1


def test_protocol_reads_keep_to_the_sites(site_data):
    from dosereg.web import exports

    d = site_data
    a = _scope(SITE_A)
    now = timezone.now()
    since, until = now - timedelta(days=365), now + timedelta(days=1)
    names = {r["source_name"] for r in selectors.name_mappings(since=since, scope=a)["names"]}
    assert names == {"Site A barium swallow", "Both-sites swallow at A"}
    tech = selectors.fluoro_technique(since=since, until=until, scope=a)
    assert {r["study__device_id"] for r in tech["pulse"] + tech["modes"]} == {d.studies["sa_rf"].device_id}
    rows = list(exports.protocol_study_rows(since=since, until=until, scope=a))
    assert {r[3] for r in rows} == {"Site A barium swallow", "Both-sites swallow at A"}
    events = list(exports.technique_event_rows(since=since, until=until, scope=a))
    assert events and {r[2] for r in events} == {"Site A barium swallow", "Both-sites swallow at A"}


# ---------------------------------------------------------------------------
# pages: what a site-scoped RSO sees, and fixed query counts
# ---------------------------------------------------------------------------
def test_scoped_pages_say_what_they_cover(site_data, web_data, client, settings):
    d = site_data
    client.force_login(d.users["rso_a"])
    html = client.get(reverse("web:dashboard")).content.decode()
    assert "data-scope" in html and SITE_A.upper() in html
    html = client.get(reverse("web:patient_history", kwargs={"pk": d.patients["ab"].pk})).content.decode()
    assert "Exams at your sites" in html and "data-other-sites" in html and "1 of them was at sites outside yours" in html
    assert "Both-sites swallow at A" in html and "Both-sites swallow at B" not in html
    # an RSO without a site while RSO_UNSCOPED_SEES_ALL is false is told why the pages are empty
    settings.DOSEREG_RSO_UNSCOPED_SEES_ALL = False
    client.force_login(web_data.users["rso"])
    html = client.get(reverse("web:dashboard")).content.decode()
    assert "data-scope-empty" in html and "not assigned to any site" in html
    assert client.get(reverse("web:patient_history", kwargs={"pk": web_data.patients["a"].pk})).status_code == 404
    # unscoped users see no scope note
    client.force_login(web_data.users["physicist"])
    assert "data-scope" not in client.get(reverse("web:dashboard")).content.decode()


def _count(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code)
        if hasattr(resp, "streaming_content"):
            b"".join(resp.streaming_content)
    return len(ctx.captured_queries)


def test_scoped_query_counts_are_bounded(site_data, web_data, client, tmp_path):
    from .test_pages import MAX_QUERIES, _more_data

    d = site_data
    urls = {
        "dashboard": reverse("web:dashboard"),
        "patient_history": reverse("web:patient_history", kwargs={"pk": d.patients["ab"].pk}),
        "study_detail": reverse("web:study_detail", kwargs={"pk": d.studies["sa_rf"].pk}),
        "patient_list": reverse("web:patient_list") + "?q=PS",
        "export": reverse("web:patient_history_export", kwargs={"pk": d.patients["ab"].pk}),
        "api_studies": reverse("web:api_studies"),
        "api_alerts": reverse("web:api_alerts"),
    }
    client.force_login(d.users["rso_a"])
    first = {name: _count(client, url) for name, url in urls.items()}
    for name in ("dashboard", "patient_history", "study_detail"):
        # the scope lookup, and on the history the count of exams elsewhere
        assert first[name] <= MAX_QUERIES[name] + 2, (name, first[name])
    _more_data(tmp_path, 300)
    assert {name: _count(client, url) for name, url in urls.items()} == first


def test_site_assignment_in_the_admin(site_data, web_data, client):
    w = web_data
    client.force_login(w.users["admin"])
    add = reverse("admin:access_siteassignment_add")
    html = client.get(add).content.decode()
    assert "Known sites" in html and SITE_A in html and SITE_B in html  # the devices' institution names as hints
    form = {"user": w.users["rso"].pk, "note": "night cover", "sites-TOTAL_FORMS": "2", "sites-INITIAL_FORMS": "0",
            "sites-MIN_NUM_FORMS": "0", "sites-MAX_NUM_FORMS": "1000", "sites-0-institution": f"  {SITE_B} ",
            "sites-1-institution": ""}
    r = client.post(add, form)
    assert r.status_code == 302, r.content.decode()[:2000]
    assert scope_for(_fresh(w.users["rso"])).names == (SITE_B,)
    changelist = client.get(reverse("admin:access_siteassignment_changelist")).content.decode()
    assert SITE_B in changelist and "t-rso-a" in changelist
    # only admins reach it
    client.force_login(w.users["rso"])
    assert client.get(add).status_code == 302


def test_study_browser_cursor_of_another_site_reveals_nothing(site_data):
    """A keyset cursor (``after`` / ``before``) naming a study the user may not see is not compared with: the
    page starts at the beginning, so where a page starts never tells where that study sorts."""
    from dosereg.web import browse

    d = site_data
    a = _scope(SITE_A)
    first = [d.studies["sa_rf"].pk, d.studies["ab_a"].pk]  # newest first at A
    f = browse.read_filters({"sort": "-date"})
    assert [s.pk for s in browse.study_page(f, scope=a).rows] == first
    for key in ("after", "before"):
        for foreign in ("sb_rf", "ab_b"):
            f = browse.read_filters({"sort": "-date", key: str(d.studies[foreign].pk)})
            p = browse.study_page(f, scope=a)
            assert [s.pk for s in p.rows] == first and p.first_index == 1, (key, foreign)
    # the same cursor at A's own study works as a cursor
    f = browse.read_filters({"sort": "-date", "after": str(d.studies["sa_rf"].pk)})
    p = browse.study_page(f, scope=a)
    assert [s.pk for s in p.rows] == [d.studies["ab_a"].pk] and p.first_index == 2
