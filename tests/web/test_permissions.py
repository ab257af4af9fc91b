"""Permission matrix: every URL pattern (discovered from the resolver) x every role.

A new URL without an entry in EXPECT fails ``test_every_url_has_expectations``,
so nothing can be added without deciding who may reach it.
"""
from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

ROLES = ("anonymous", "rso", "physicist", "staff", "patient", "patient2", "admin")
CLINICAL = {"rso", "physicist", "admin"}

# outcome codes: 200/400/403/404/405/401 = HTTP status; "login" = redirect to the login page;
# "redirect" = any other redirect
def grid(allowed, ok=200, denied=403, anon="login", **special):
    out = {}
    for role in ROLES:
        if role == "anonymous":
            out[role] = anon
        elif role in allowed:
            out[role] = ok
        else:
            out[role] = denied
    out.update(special)
    return out


PAGES_CLINICAL = grid(CLINICAL)
API_CLINICAL_AND_PATIENT = grid(CLINICAL | {"patient", "patient2"}, anon=401)
API_OWN_DETAIL = grid(CLINICAL | {"patient"}, anon=401, patient2=404)  # object of patient A

# url name -> (method, kwargs builder key, query string, expectations)
EXPECT = {
    "web:home": ("get", None, "", grid(set(ROLES), ok="redirect")),
    "web:login": ("get", None, "", grid(set(ROLES), ok="redirect", anon=200)),
    "admin_login": ("get", None, "", grid(set(ROLES), ok="redirect", anon=200)),
    "web:logout": ("post", None, "", grid(set(ROLES), ok="login")),  # signed out -> the login page
    "web:no_role": ("get", None, "", grid(set(), denied=403)),
    "web:dashboard": ("get", None, "", grid(CLINICAL)),
    "web:alert_action": ("post", "alert", "", grid({"rso", "admin"})),
    "web:quarantine_reprocess": ("post", None, "", grid(CLINICAL, ok="redirect")),
    "web:patient_list": ("get", None, "?q=PW", PAGES_CLINICAL),
    "web:patient_history": ("get", "patient_a", "", PAGES_CLINICAL),
    "web:patient_history_export": ("get", "patient_a", "", PAGES_CLINICAL),
    "web:patient_invite": ("post", "patient_a", "", grid({"rso", "admin"}, ok="redirect")),
    "web:study_detail": ("get", "study_a", "", PAGES_CLINICAL),
    # the skin-dose map of a study (study_a has none: 404 for those allowed, 403 for the rest)
    "web:study_skin_map_png": ("get", "study_a", "", grid(CLINICAL, ok=404)),
    "web:study_skin_map_3d": ("get", "study_a", "", grid(CLINICAL, ok=404)),
    # a patient's summed skin-dose map over 60 days (patient A has none: 404 for those allowed, 403 for the rest)
    "web:patient_skin_map_sum_png": ("get", "patient_a_skin_sum", "", grid(CLINICAL, ok=404)),
    "web:vendor_plotly": ("get", None, "", grid(set(ROLES), anon=200)),  # plotly.js, served like a static file
    "web:study_browser": ("get", None, "?modality=CT&sort=-dlp", PAGES_CLINICAL),
    "web:study_browser_export": ("get", "browser_export", "", PAGES_CLINICAL),
    "web:modality_home": ("get", "modality", "", PAGES_CLINICAL),
    # devices: clinical roles read; RSOs and admins rename, merge, split (an empty form: back to the page)
    "web:device_list": ("get", None, "", PAGES_CLINICAL),
    "web:device_detail": ("get", "device", "", PAGES_CLINICAL),
    "web:device_rename": ("post", "device", "", grid({"rso", "admin"}, ok="redirect")),
    "web:device_merge": ("post", "device", "", grid({"rso", "admin"}, ok="redirect")),
    "web:device_split": ("post", "device", "", grid({"rso", "admin"}, ok="redirect")),
    "web:portal": ("get", None, "", grid({"patient", "patient2"})),
    "web:portal_exam": ("get", "study_a", "", grid({"patient"}, patient2=404)),
    "web:portal_export": ("get", None, "", grid({"patient", "patient2"})),
    "web:portal_print": ("get", None, "", grid({"patient", "patient2"})),
    "web:portal_pdf": ("get", None, "", grid({"patient", "patient2"})),
    "web:portal_invite": ("get", "token", "", grid(set(ROLES), anon=200)),
    "web:protocol_audit": ("get", None, "", PAGES_CLINICAL),
    "web:protocol_group": ("get", None, "", PAGES_CLINICAL),
    "web:protocol_overview": ("get", None, "", PAGES_CLINICAL),
    "web:protocol_distribution": ("get", None, "?quantity=dap_total_gy_cm2", PAGES_CLINICAL),
    "web:protocol_names": ("get", None, "", PAGES_CLINICAL),
    "web:drl_sets": ("get", None, "", PAGES_CLINICAL),
    "web:fluoro_technique": ("get", None, "", PAGES_CLINICAL),
    "web:protocol_export": ("get", "export", "", PAGES_CLINICAL),
    "web:staff_me": ("get", None, "", grid({"staff"})),
    "web:staff_overview": ("get", None, "", grid({"rso", "admin"})),
    "web:audit_log": ("get", None, "", grid({"admin"})),
    "web:api_token": ("post", None, "", grid(set(ROLES), ok=400, anon=400)),
    "web:api_studies": ("get", None, "", API_CLINICAL_AND_PATIENT),
    "web:api_study": ("get", "study_a", "", API_OWN_DETAIL),
    "web:api_study_events": ("get", "study_a", "", API_OWN_DETAIL),
    "web:api_events": ("get", None, "", API_CLINICAL_AND_PATIENT),
    "web:api_patients": ("get", None, "", API_CLINICAL_AND_PATIENT),
    "web:api_patient": ("get", "patient_a", "", API_OWN_DETAIL),
    "web:api_alerts": ("get", None, "", grid(CLINICAL, anon=401)),
    "web:api_alert_action": ("post", "api_alert", "", grid({"rso", "admin"}, anon=401)),
    "web:api_fhir_search": ("get", None, "?patient=PATIENT_A", API_CLINICAL_AND_PATIENT),
    "web:api_fhir_observation": ("get", "fhir", "", API_OWN_DETAIL),
    # the RSO's worklist and cases (dosereg.cases): clinical roles read, RSOs and admins act
    "cases:worklist": ("get", None, "", PAGES_CLINICAL),
    "cases:export": ("get", None, "", PAGES_CLINICAL),
    "cases:due": ("get", None, "", PAGES_CLINICAL),
    "cases:detail": ("get", "case", "", PAGES_CLINICAL),
    "cases:bulk_acknowledge": ("post", None, "", grid({"rso", "admin"}, ok="redirect")),
    "cases:action": ("post", "case_action", "", grid({"rso", "admin"}, ok="redirect")),
    "cases:incidents": ("get", None, "", PAGES_CLINICAL),
    "cases:staff_person": ("get", "staff_member", "", grid({"rso", "admin"})),  # as the staff overview
    "cases:incidents_export": ("get", None, "", PAGES_CLINICAL),
    "cases:incidents_pdf": ("get", None, "?year=2026", PAGES_CLINICAL),
    "cases:incident_file": ("get", "incident_file", "", PAGES_CLINICAL),  # an incident's CSV / PDF: clinical roles read
    "cases:incident_action": ("post", "incident_declare", "", grid({"rso", "admin"}, ok="redirect")),  # physicists: 403
    # the ops app's liveness/readiness probe: open to all, carries no patient data (503 = a component is down)
    "ops:health": ("get", None, "", grid(set(ROLES), ok=(200, 503), anon=(200, 503))),
}

# writes that need a stronger role than reading the same page
EXTRA = [
    ("protocol names: edit", "web:protocol_names", "post", None,
     {"name": "CT:CT Chest", "new_standard_name": "Chest (routine)", "confirm": "yes"},
     grid({"physicist", "admin"}, ok="redirect")),
    ("DRL sets: edit", "web:drl_sets", "post", None,
     {"set-name": "Local test set {role}", "set-citation": "local decision, test"},
     grid({"physicist", "admin"}, ok="redirect")),
    # the incident register: RSOs declare, physicists (and admins) sign off
    ("incident: declare", "cases:incident_action", "post", "incident_declare", {"note": "declared by {role}", "category": "unintended"},
     grid({"rso", "admin"}, ok="redirect")),
    ("incident: physicist sign-off", "cases:incident_action", "post", "incident_sign_off", {"note": "signed by {role}"},
     grid({"physicist", "admin"}, ok="redirect")),
]


def discovered_names(resolver=None, ns: str = "") -> set[str]:
    names = set()
    for p in (resolver or get_resolver()).url_patterns:
        if isinstance(p, URLResolver):
            if p.app_name == "admin":
                continue  # Django's admin: guarded by is_staff (the admin login goes through ours)
            names |= discovered_names(p, f"{ns}{p.namespace}:" if p.namespace else ns)
        elif isinstance(p, URLPattern) and p.name:
            names.add(ns + p.name)
    return names


def test_every_url_has_expectations():
    assert discovered_names() == set(EXPECT), "add the new URL to EXPECT with its role matrix"


def _kwargs(key, d, alert_id):
    from dosereg.web.services import patient_invitation_issue

    if key is None:
        return {}
    if key == "patient_a":
        return {"pk": d.patients["a"].pk}
    if key == "patient_a_skin_sum":
        return {"pk": d.patients["a"].pk, "days": 60}
    if key == "study_a":
        return {"pk": d.studies["a_angio"].pk}
    if key == "device":
        return {"pk": d.studies["a_angio"].device_id}
    if key == "fhir":
        return {"obs_id": f"dose-summary-{d.studies['a_angio'].pk}"}
    if key == "alert":
        return {"alert_id": alert_id, "action": "follow_up"}
    if key == "api_alert":
        return {"pk": alert_id, "action": "follow_up"}
    if key in ("case", "case_action", "incident_declare", "incident_sign_off"):
        from dosereg.cases.models import CaseAlert

        case_id = CaseAlert.objects.get(alert_id=alert_id).case_id
        return {"case_id": case_id, **{"case": {}, "case_action": {"action": "follow_up"}, "incident_declare": {"action": "declare"},
                                       "incident_sign_off": {"action": "sign_off"}}[key]}
    if key == "incident_file":  # the PDF of an incident declared on the alert's case
        from dosereg.cases.incidents import incident_declare
        from dosereg.cases.models import CaseAlert, Incident

        case_id = CaseAlert.objects.get(alert_id=alert_id).case_id
        if not Incident.objects.filter(case_id=case_id).exists():
            incident_declare(case_id=case_id, user=d.users["rso"], category="unintended", summary="declared for the permission matrix")
        return {"case_id": case_id, "fmt": "pdf"}
    if key == "staff_member":
        from dosereg.staff.models import StaffMember

        return {"staff_id": StaffMember.objects.order_by("pk").values_list("pk", flat=True)[0]}
    if key == "export":
        return {"kind": "studies", "fmt": "csv"}
    if key == "modality":
        return {"modality": "CT"}
    if key == "browser_export":
        return {"fmt": "csv"}
    if key == "token":
        return {"token": patient_invitation_issue(patient=d.patients["c"], issued_by=d.users["rso"])[1]}
    raise KeyError(key)


def outcome(resp) -> int | str:
    if resp.status_code in (301, 302):
        return "login" if "/login/" in resp["Location"] else "redirect"
    return resp.status_code


def test_permission_matrix(web_data, client, settings):
    from dosereg.exposure.models import Alert

    settings.LOGIN_URL = "web:login"
    d = web_data
    alert = Alert.objects.filter(patient=d.patients["a"]).first()
    assert alert is not None, "the test data should raise at least one exposure alert"
    failures = []
    cases = [(name, *spec) for name, spec in EXPECT.items()]
    for name, method, key, query, expect in cases:
        for role in ROLES:
            client.logout()
            if role != "anonymous":
                client.force_login(d.users[role])
            url = reverse(name, kwargs=_kwargs(key, d, alert.pk)) + query.replace("PATIENT_A", str(d.patients["a"].pk))
            if method == "get":
                resp = client.get(url)
            else:
                resp = client.post(url, {"username": f"nobody-{role}", "password": "wrong"} if name == "web:api_token" else {},
                                   HTTP_X_REQUESTED_WITH="fetch" if "alert" in name else None)
            got = outcome(resp)
            if got != expect[role] and not (isinstance(expect[role], tuple) and got in expect[role]):
                failures.append(f"{name} {method.upper()} {url} as {role}: expected {expect[role]}, got {got}")
    for label, name, method, key, payload, expect in EXTRA:
        for role in ROLES:
            client.logout()
            if role != "anonymous":
                client.force_login(d.users[role])
            body = {k: v.format(role=role) for k, v in payload.items()}
            got = outcome(client.post(reverse(name, kwargs=_kwargs(key, d, alert.pk)), body))
            if got != expect[role]:
                failures.append(f"{label} as {role}: expected {expect[role]}, got {got}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("field", ["pk"])
def test_patient_cannot_reach_other_patients_by_id(web_data, client, field):
    """Every id a patient could change: other patients' studies, events, records and FHIR -> 404, never data."""
    d = web_data
    client.force_login(d.users["patient2"])  # patient B
    for label, s in d.studies.items():
        own = s.patient_id == d.patients["b"].pk
        expect = 200 if own else 404
        for url in (reverse("web:portal_exam", kwargs={"pk": s.pk}), reverse("web:api_study", kwargs={"pk": s.pk}),
                    reverse("web:api_study_events", kwargs={"pk": s.pk}),
                    reverse("web:api_fhir_observation", kwargs={"obs_id": f"dose-summary-{s.pk}"}),
                    reverse("web:api_events") + f"?study={s.pk}"):
            assert client.get(url).status_code == expect, (label, url)
    for key, p in d.patients.items():
        expect = 200 if key == "b" else 404
        assert client.get(reverse("web:api_patient", kwargs={"pk": p.pk})).status_code == expect
    # list endpoints only ever contain patient B's rows
    studies = client.get(reverse("web:api_studies") + f"?patient={d.patients['a'].pk}").json()["results"]
    assert studies == []
    rows = client.get(reverse("web:api_studies")).json()["results"]
    assert rows and {r["patient"] for r in rows} == {d.patients["b"].pk}
    events = client.get(reverse("web:api_events") + "?page_size=1000").json()["results"]
    b_studies = {s.pk for s in d.studies.values() if s.patient_id == d.patients["b"].pk}
    assert events and {e["study"] for e in events} <= b_studies
    bundle = client.get(reverse("web:api_fhir_search") + f"?patient={d.patients['a'].pk}").json()
    assert bundle["total"] == 0
    pts = client.get(reverse("web:api_patients")).json()["results"]
    assert [p["id"] for p in pts] == [d.patients["b"].pk]
    # the portal list shows only own exams
    html = client.get(reverse("web:portal")).content.decode()
    assert "Hip fracture fixation" in html and "Coronary angiography" not in html
