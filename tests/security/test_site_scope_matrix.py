"""Site scoping x every URL: an RSO of site A against the data of site B.

Every URL of the permission matrix (tests/web/test_permissions.py) is classified here, so a new URL cannot be
added without deciding how it keeps to the RSO's sites:

* OBJECT: a URL naming one patient, study or alert: site B's object is a 404 (nothing changed, nothing
  audited as read) for the site-A RSO, and the same URL with site A's object works; the site-B RSO can
  reach B's object, so the 404 comes from the scope, not from the object.
* LISTS: a page, export or API list: site B's rows are absent, site A's are present.
* NOT_CLINICAL: no registry data of any site (sign-in, the portal's own-record pages, staff dose, audit trail...).
"""
from __future__ import annotations

import csv
import io

from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from dosereg.audit.models import AuditEvent
from tests.web import test_permissions as P
from tests.web.site_data import SITE_A


def _objects(d, site: str) -> dict:
    key = {"a": ("sa", "sa_rf"), "b": ("sb", "sb_rf")}[site]
    return {"patient": d.patients[key[0]], "study": d.studies[key[1]], "alert": d.alerts[key[1]]}


# name: (method, kwargs from the objects, query string from the objects, outcome when allowed)
OBJECT = {
    "web:patient_history": ("get", lambda o: {"pk": o["patient"].pk}, "", 200),
    "web:patient_history_export": ("get", lambda o: {"pk": o["patient"].pk}, "", 200),
    "web:patient_invite": ("post", lambda o: {"pk": o["patient"].pk}, "", "redirect"),
    "web:study_detail": ("get", lambda o: {"pk": o["study"].pk}, "", 200),
    "web:study_skin_map_png": ("get", lambda o: {"pk": o["study"].pk}, "", 200),
    "web:study_skin_map_3d": ("get", lambda o: {"pk": o["study"].pk}, "", 200),
    "web:patient_skin_map_sum_png": ("get", lambda o: {"pk": o["patient"].pk, "days": 60}, "", 200),
    "web:alert_action": ("post", lambda o: {"alert_id": o["alert"].pk, "action": "acknowledge"}, "", 200),
    "web:api_study": ("get", lambda o: {"pk": o["study"].pk}, "", 200),
    "web:api_study_events": ("get", lambda o: {"pk": o["study"].pk}, "", 200),
    "web:api_events": ("get", lambda o: {}, "?study={study}", 200),
    "web:api_patient": ("get", lambda o: {"pk": o["patient"].pk}, "", 200),
    "web:api_fhir_observation": ("get", lambda o: {"obs_id": f"dose-summary-{o['study'].pk}"}, "", 200),
    "web:api_alert_action": ("post", lambda o: {"pk": o["alert"].pk, "action": "close"}, "", 200),  # after the above
    "cases:detail": ("get", lambda o: {"case_id": o["alert"].case_link.case_id}, "", 200),
    "cases:action": ("post", lambda o: {"case_id": o["alert"].case_link.case_id, "action": "follow_up"}, "", 200),
    # an empty note is refused (409) for the RSO's own case; another site's case is a 404 before anything is read
    "cases:incident_action": ("post", lambda o: {"case_id": o["alert"].case_link.case_id, "action": "note"}, "", 409),
    # the incident of the site's case (declared by test_object_urls_of_another_site_are_404), as PDF
    "cases:incident_file": ("get", lambda o: {"case_id": o["alert"].case_link.case_id, "fmt": "pdf"}, "", 200),
    # the device of the site's study; the actions with an empty form change nothing and go back to its page
    "web:device_detail": ("get", lambda o: {"pk": o["study"].device_id}, "", 200),
    "web:device_rename": ("post", lambda o: {"pk": o["study"].device_id}, "", "redirect"),
    "web:device_merge": ("post", lambda o: {"pk": o["study"].device_id}, "", "redirect"),
    "web:device_split": ("post", lambda o: {"pk": o["study"].device_id}, "", "redirect"),
}
LISTS = {
    "web:dashboard", "web:patient_list", "web:quarantine_reprocess", "web:protocol_audit", "web:protocol_distribution",
    "web:protocol_names", "web:fluoro_technique", "web:protocol_export", "web:api_studies", "web:api_patients",
    "web:protocol_group", "web:protocol_overview",
    "web:api_alerts", "web:api_fhir_search", "web:study_browser", "web:study_browser_export",
    "web:modality_home",  # (and web:api_events without ?study=, checked below)
    "cases:worklist", "cases:export", "cases:due", "cases:bulk_acknowledge", "cases:incidents", "cases:incidents_export",
    "cases:incidents_pdf", "web:device_list",
}
NOT_CLINICAL = {
    "web:home": "a redirect", "web:login": "sign-in", "admin_login": "sign-in", "web:logout": "sign-out",
    "web:no_role": "a notice", "web:api_token": "sign-in", "ops:health": "component health, no rows",
    "web:portal": "a patient's own record only (refused to RSOs)", "web:portal_exam": "ditto",
    "web:portal_export": "ditto", "web:portal_print": "ditto", "web:portal_pdf": "ditto",
    "web:portal_invite": "the invitation token's own patient, for the patient",
    "web:staff_me": "the user's own occupational dose", "web:staff_overview": "staff members, not clinical data",
    "cases:staff_person": "one staff member's occupational dose, as the staff overview",
    "web:audit_log": "admins only", "web:drl_sets": "published reference levels, no registry data",
    "web:vendor_plotly": "the plotly.js library file, no data",
}


def _skin_results(*studies) -> None:
    """A stored skin-dose result (map and cells) for each study, and for an earlier procedure of the same patient at
    the same site, so that its map pages and the patient's summed map answer 200 when allowed."""
    import datetime as dt

    from dosereg.registry.models import Study
    from dosereg.skindose.models import StudySkinDose
    from dosereg.skindose.render import skin_map_png

    cells = {"x_cm": [0.0, 1.0], "y_cm": [0.0, 0.0], "z_cm": [0.0, 0.0], "dose_gy": [1.0, 0.5]}
    earlier = []
    for study in studies:
        twin = Study.objects.get(pk=study.pk)
        twin.pk = None
        twin.study_instance_uid = f"{study.study_instance_uid}.9"
        twin.study_datetime = study.study_datetime - dt.timedelta(days=10)
        twin.save()
        earlier.append(twin)
    for study in [*studies, *earlier]:
        StudySkinDose.objects.update_or_create(study=study, defaults={
            "computable": True, "psd_gy": 1.0, "phantom": "plane", "patient_orientation": "head_first_supine",
            "map_cells": cells, "kar_total_gy": 1.5,
            "map_png": skin_map_png(cells, phantom="plane", psd_gy=1.0),
            "psd_location": {"description": "back"}})


def test_every_url_is_classified_for_site_scoping():
    names = set(P.EXPECT)
    classified = set(OBJECT) | LISTS | set(NOT_CLINICAL)
    assert classified == names, f"unclassified: {names - classified}; gone: {classified - names}"
    assert not (set(OBJECT) & LISTS) and not (set(OBJECT) & set(NOT_CLINICAL)) and not (LISTS & set(NOT_CLINICAL))


def _request(c: Client, name: str, site_objects: dict):
    method, kwargs, query, _ok = OBJECT[name]
    url = reverse(name, kwargs=kwargs(site_objects)) + query.format(study=site_objects["study"].pk)
    if method == "get":
        return url, c.get(url)
    return url, c.post(url, {}, HTTP_X_REQUESTED_WITH="fetch")


def test_object_urls_of_another_site_are_404(site_data, web_data):
    from dosereg.cases.incidents import incident_declare

    d = site_data
    a, b = _objects(d, "a"), _objects(d, "b")
    _skin_results(a["study"], b["study"])
    for objs, rso in ((a, d.users["rso_a"]), (b, d.users["rso_b"])):  # an incident at each site, for its exports
        incident_declare(case_id=objs["alert"].case_link.case_id, user=rso, category="unintended", summary="site incident")
    failures = []
    for user, objs, want_ok in ((d.users["rso_a"], b, False), (d.users["rso_a"], a, True), (d.users["rso_b"], b, True)):
        c = Client()
        c.force_login(user)
        for name in OBJECT:
            url, resp = _request(c, name, objs)
            got = P.outcome(resp)
            want = OBJECT[name][3] if want_ok else 404
            if got != want:
                failures.append(f"{user.username} {name} {url}: expected {want}, got {got}")
    assert not failures, "\n".join(failures)
    # the refused requests changed nothing and logged no read of site B's patient by A's RSO
    reads = AuditEvent.objects.filter(username=d.users["rso_a"].username, patient_pk=b["patient"].pk)
    assert not reads.exists(), [(r.action, r.object_type) for r in reads]
    from dosereg.exposure.models import AlertEvent

    assert not AlertEvent.objects.filter(alert=b["alert"], actor=d.users["rso_a"]).exists()
    assert not b["patient"].portal_accounts.filter(invited_by=d.users["rso_a"]).exists()


def test_object_urls_through_token_auth(site_data, web_data):
    d = site_data
    token, _ = Token.objects.get_or_create(user=d.users["rso_a"])
    c = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
    for name in [n for n in OBJECT if n.startswith("web:api_") and OBJECT[n][0] == "get"]:
        for site, want in (("b", 404), ("a", 200)):
            url, resp = _request(c, name, _objects(d, site))
            assert resp.status_code == want, (name, url, resp.status_code)


def _html(c, url) -> str:
    resp = c.get(url)
    assert resp.status_code == 200, (url, resp.status_code)
    if hasattr(resp, "streaming_content"):
        return b"".join(resp.streaming_content).decode("utf-8-sig")
    return resp.content.decode()


def test_lists_hold_only_the_rso_sites(site_data, web_data):
    d, w = site_data, web_data
    c = Client()
    c.force_login(d.users["rso_a"])
    dev_a, dev_b = str(d.studies["sa_rf"].device), str(d.studies["sb_rf"].device)
    assert dev_a != dev_b
    al = {k: v.pk for k, v in d.alerts.items()}
    cs = {k: v.case_link.case_id for k, v in d.alerts.items()}  # the RSO case each alert joined
    a_studies = {d.studies["sa_rf"].pk, d.studies["ab_a"].pk}
    checked = set()

    def absent_present(name, url, absent, present):
        checked.add(name)
        text = _html(c, url)
        for s in absent:
            assert s not in text, (name, url, f"{s!r} of another site is shown")
        for s in present:
            assert s in text, (name, url, f"{s!r} of the RSO's site is missing")

    other_ids = [p.patient_id for p in w.patients.values()]  # the web tests' patients, at two other sites
    absent_present("web:dashboard", reverse("web:dashboard"),
                   [f'data-case-row="{cs["sb_rf"]}"', f'data-case-row="{cs["ab_b"]}"', "PSB0001", "Site B barium swallow",
                    dev_b, *other_ids, "not a DICOM file"],
                   [f'data-case-row="{cs["sa_rf"]}"', "PSA0001", "Site A barium swallow", dev_a])
    absent_present("web:patient_list", reverse("web:patient_list") + "?q=PS", ["PSB0001"], ["PSA0001", "PSAB001"])
    text = _html(c, reverse("web:patient_list"))
    assert "PSB0001" not in text and not any(x in text for x in other_ids) and "PSA0001" in text
    absent_present("web:protocol_audit", reverse("web:protocol_audit"), [dev_b], [dev_a])
    absent_present("web:protocol_overview", reverse("web:protocol_overview"), [dev_b], [dev_a])
    absent_present("web:protocol_names", reverse("web:protocol_names"), ["Site B barium swallow", "CT Chest"],
                   ["Site A barium swallow"])
    absent_present("web:fluoro_technique", reverse("web:fluoro_technique"), [dev_b], [dev_a])
    # one audit group: another site's studies are not in it (no quantity, no outlier); the own site's are
    group = reverse("web:protocol_group") + "?modality=RF&description="
    absent_present("web:protocol_group", group + "Site+B+barium+swallow", ["data-group-quantity"], [])
    assert "data-group-quantity" in _html(c, group + "Site+A+barium+swallow")
    for kind in ("studies", "events", "summary"):
        url = reverse("web:protocol_export", kwargs={"kind": kind, "fmt": "csv"})
        rows = list(csv.reader(io.StringIO(_html(c, url))))
        flat = "\n".join(",".join(r) for r in rows)
        assert len(rows) > 1 and "Site B" not in flat and dev_b not in flat, (kind, flat[:500])
        assert ("Site A barium swallow" if kind != "summary" else dev_a) in flat, kind
    checked.add("web:protocol_export")

    absent_present("web:study_browser", reverse("web:study_browser"), ["Site B barium swallow", dev_b, *other_ids],
                   ["Site A barium swallow", "Both-sites swallow at A", dev_a])
    rows = list(csv.reader(io.StringIO(_html(c, reverse("web:study_browser_export", kwargs={"fmt": "csv"})))))
    uid = rows[0].index("study_instance_uid")
    assert {r[uid] for r in rows[1:]} == {d.studies[k].study_instance_uid for k in ("sa_rf", "ab_a")}
    checked.add("web:study_browser_export")
    absent_present("web:modality_home", reverse("web:modality_home", kwargs={"modality": "RF"}),
                   [dev_b, str(w.studies["a_rf_preg"].device), *other_ids],
                   [dev_a])
    absent_present("web:device_list", reverse("web:device_list"), [dev_b, str(w.studies["a_rf_preg"].device)], [dev_a])

    dist = reverse("web:protocol_distribution") + "?quantity=dap_total_gy_cm2"
    assert c.get(dist + f"&device_id={d.studies['sb_rf'].device_id}").json()["values"] == []
    assert c.get(dist).json()["values"] == []  # "any device" is more than the RSO's sites
    assert c.get(dist + f"&device_id={d.studies['sa_rf'].device_id}").json()["values"]
    checked.add("web:protocol_distribution")

    r = c.post(reverse("web:quarantine_reprocess"), {}, HTTP_X_REQUESTED_WITH="fetch")
    assert r.json() == {"ok": True, "count": 0}  # the unreadable file of the web data is at no site
    checked.add("web:quarantine_reprocess")

    studies = c.get(reverse("web:api_studies") + "?page_size=1000").json()["results"]
    assert {s["id"] for s in studies} == a_studies
    assert c.get(reverse("web:api_studies") + f"?patient={d.patients['sb'].pk}").json()["results"] == []
    events = c.get(reverse("web:api_events") + "?page_size=1000").json()["results"]
    assert events and {e["study"] for e in events} <= a_studies
    pts = c.get(reverse("web:api_patients") + "?page_size=1000").json()["results"]
    assert {p["id"] for p in pts} == {d.patients["sa"].pk, d.patients["ab"].pk}
    alerts = {x["id"] for x in c.get(reverse("web:api_alerts") + "?status=all").json()["results"]}
    assert al["sa_rf"] in alerts and al["sb_rf"] not in alerts and al["ab_b"] not in alerts
    fhir = reverse("web:api_fhir_search")
    assert c.get(fhir + f"?patient={d.patients['sb'].pk}").json()["total"] == 0
    both = c.get(fhir + f"?patient={d.patients['ab'].pk}").json()
    assert [e["resource"]["id"] for e in both["entry"] if e["search"]["mode"] == "match"] == [f"dose-summary-{d.studies['ab_a'].pk}"]
    # the included peak skin dose observations: of the same (site A) study only
    assert {e["resource"]["id"] for e in both["entry"] if e["search"]["mode"] == "include"} <= {f"peak-skin-dose-{d.studies['ab_a'].pk}"}
    checked |= {"web:api_studies", "web:api_patients", "web:api_alerts", "web:api_fhir_search"}
    # the RSO's worklist, its CSV, the due list and the bulk acknowledgement keep to the RSO's sites
    absent_present("cases:worklist", reverse("cases:worklist") + "?status=all",
                   [f'data-case-row="{cs["sb_rf"]}"', f'data-case-row="{cs["ab_b"]}"', "PSB0001", *other_ids],
                   [f'data-case-row="{cs["sa_rf"]}"', "PSA0001"])
    flat = _html(c, reverse("cases:export") + "?status=all")
    assert "PSB0001" not in flat and not any(x in flat for x in other_ids) and "PSA0001" in flat
    checked.add("cases:export")
    from dosereg.cases.models import Case
    from dosereg.cases.services import case_follow_up

    for label in ("sa_rf", "sb_rf"):
        case_follow_up(case_id=cs[label], user=d.users["rso_b"] if label == "sb_rf" else d.users["rso_a"], note="due list")
    absent_present("cases:due", reverse("cases:due"), [f'/alerts/{cs["sb_rf"]}/'], [f'/alerts/{cs["sa_rf"]}/'])
    Case.objects.filter(pk__in=[cs["sb_rf"], cs["ab_b"]]).update(status="open")
    c.post(reverse("cases:bulk_acknowledge"), {"ids": [cs["sb_rf"], cs["ab_b"], cs["ab_a"] if "ab_a" in cs else cs["sa_rf"]], "note": "x"})
    assert set(Case.objects.filter(pk__in=[cs["sb_rf"], cs["ab_b"]]).values_list("status", flat=True)) == {"open"}
    checked.add("cases:bulk_acknowledge")
    from dosereg.cases.incidents import incident_declare

    for label, user in (("sa_rf", d.users["rso_a"]), ("sb_rf", d.users["rso_b"])):
        incident_declare(case_id=cs[label], user=user, category="pregnancy", summary=f"incident at {label}")
    absent_present("cases:incidents", reverse("cases:incidents"), [f'/alerts/{cs["sb_rf"]}/'], [f'/alerts/{cs["sa_rf"]}/'])
    flat = _html(c, reverse("cases:incidents_export"))
    assert "PSB0001" not in flat and "PSA0001" in flat
    checked.add("cases:incidents_export")
    from pypdf import PdfReader

    pdf = c.get(reverse("cases:incidents_pdf"))
    assert pdf.status_code == 200
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "PSB0001" not in text and "PSA0001" in text and "1 incident(s)" in " ".join(text.split())
    checked.add("cases:incidents_pdf")
    assert checked == LISTS


def test_unscoped_and_all_sites_users_see_both_sites(site_data, web_data):
    from dosereg.web.services import site_assignment_set

    d, w = site_data, web_data
    site_assignment_set(user=d.users["rso_b"], sites=[SITE_A], all_sites=True)
    for user in (w.users["rso"], w.users["physicist"], w.users["admin"], d.users["rso_b"]):
        c = Client()
        c.force_login(user)
        for site in ("a", "b"):
            o = _objects(d, site)
            assert c.get(reverse("web:study_detail", kwargs={"pk": o["study"].pk})).status_code == 200, user
            assert c.get(reverse("web:api_patient", kwargs={"pk": o["patient"].pk})).status_code == 200, user
        html = c.get(reverse("web:dashboard")).content.decode()
        assert f'data-case-row="{d.alerts["sb_rf"].case_link.case_id}"' in html
        assert f'data-case-row="{d.alerts["sa_rf"].case_link.case_id}"' in html


def test_rso_without_site_sees_nothing_when_unscoped_access_is_off(site_data, web_data, settings):
    settings.DOSEREG_RSO_UNSCOPED_SEES_ALL = False
    d, w = site_data, web_data
    c = Client()
    c.force_login(w.users["rso"])
    for site in ("a", "b"):
        o = _objects(d, site)
        for name in ("web:patient_history", "web:study_detail", "web:api_study", "web:api_patient"):
            url, resp = _request(c, name, o)
            assert resp.status_code == 404, (name, url)
    assert c.get(reverse("web:api_studies")).json()["results"] == []
    assert c.get(reverse("web:api_alerts") + "?status=all").json()["results"] == []
    html = c.get(reverse("web:dashboard")).content.decode()
    assert "data-case-row" not in html and "not assigned to any site" in html
