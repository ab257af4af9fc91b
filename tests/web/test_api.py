"""REST API with token auth, and the FHIR R4 RadiationDoseSummary Observation."""
from __future__ import annotations

from django.urls import reverse
from rest_framework.test import APIClient

from .data import PASSWORD


def _token(username):
    r = APIClient().post(reverse("web:api_token"), {"username": username, "password": PASSWORD}, format="json")
    assert r.status_code == 200, r.content
    return r.json()["token"]


def test_token_auth_and_role_scoping(web_data):
    api = APIClient()
    assert api.get(reverse("web:api_studies")).status_code == 401
    api.credentials(HTTP_AUTHORIZATION="Token " + _token("t-physicist"))
    data = api.get(reverse("web:api_studies") + "?modality=CT").json()
    assert data["results"] and {r["procedure_modality"] for r in data["results"]} == {"CT"}
    assert "next" in data  # cursor pagination: constant cost at any depth
    api.credentials(HTTP_AUTHORIZATION="Token " + _token("t-staff"))
    assert api.get(reverse("web:api_studies")).status_code == 403
    api.credentials(HTTP_AUTHORIZATION="Token " + _token("t-patient"))
    rows = api.get(reverse("web:api_studies")).json()["results"]
    assert {r["patient"] for r in rows} == {web_data.patients["a"].pk}
    api.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    assert api.get(reverse("web:api_studies")).status_code == 401


def test_alert_actions_through_the_api(web_data):
    from dosereg.exposure.models import Alert, AlertEvent

    alert = Alert.objects.filter(status="open").first()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token " + _token("t-physicist"))
    listed = api.get(reverse("web:api_alerts")).json()["results"]
    assert alert.pk in {a["id"] for a in listed}
    assert api.post(reverse("web:api_alert_action", kwargs={"pk": alert.pk, "action": "acknowledge"})).status_code == 403
    api.credentials(HTTP_AUTHORIZATION="Token " + _token("t-rso"))
    r = api.post(reverse("web:api_alert_action", kwargs={"pk": alert.pk, "action": "acknowledge"}), {"note": "seen"}, format="json")
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    assert AlertEvent.objects.filter(alert=alert, action="acknowledged", note="seen").exists()  # via the exposure service
    r = api.post(reverse("web:api_alert_action", kwargs={"pk": alert.pk, "action": "acknowledge"}))
    assert r.status_code == 409  # not open any more
    assert api.post(reverse("web:api_alert_action", kwargs={"pk": 999999, "action": "close"})).status_code == 404


def test_fhir_observation_follows_the_radiation_dose_summary_ig(web_data, client):
    s = web_data.studies["a_angio"]
    client.force_login(web_data.users["rso"])
    r = client.get(reverse("web:api_fhir_observation", kwargs={"obs_id": f"dose-summary-{s.pk}"}))
    assert r.status_code == 200 and r["Content-Type"].startswith("application/fhir+json")
    obs = r.json()
    assert obs["resourceType"] == "Observation" and obs["status"] == "final"
    assert obs["code"]["coding"][0] == {"system": "http://loinc.org", "code": "73569-6",
                                        "display": "Radiation exposure and protection information"}
    assert obs["subject"] == {"reference": f"Patient/{s.patient_id}"}
    assert obs["partOf"][0]["identifier"]["value"] == f"urn:oid:{s.study_instance_uid}"
    assert any(i["value"].startswith("urn:oid:") and i["type"]["coding"][0]["code"] == "sop-instance-uid" for i in obs["identifier"])
    comps = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert comps["121058"]["valueCodeableConcept"]["coding"][0]["code"] == "113704"  # projection X-ray
    dap = comps["113722"]["valueQuantity"]
    assert dap["system"] == "http://unitsofmeasure.org" and dap["code"] == "Gy.cm2"
    assert abs(dap["value"] - s.dap_total_gy_cm2) < 1e-6
    assert comps["113725"]["valueQuantity"]["code"] == "Gy"
    assert comps["113730"]["valueQuantity"]["code"] == "s"
    assert all(c["code"]["coding"][0]["system"] == "http://dicom.nema.org/resources/ontology/DCM" for c in obs["component"])
    assert obs["basedOn"][0]["identifier"]["type"]["coding"][0]["code"] == "ACSN"
    # CT: DLP component in mGy.cm, procedure reported = CT
    ct = web_data.studies["c_ct"]
    obs = client.get(reverse("web:api_fhir_observation", kwargs={"obs_id": f"dose-summary-{ct.pk}"})).json()
    comps = {c["code"]["coding"][0]["code"]: c for c in obs["component"]}
    assert comps["113813"]["valueQuantity"]["code"] == "mGy.cm"
    assert comps["121058"]["valueCodeableConcept"]["coding"][0]["code"] == "77477000"
    # search: a searchset Bundle of the patient's summaries
    b = client.get(reverse("web:api_fhir_search") + f"?code=http://loinc.org|73569-6&patient=Patient/{s.patient_id}&date=ge2000-01-01").json()
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset"
    ionising = [x for x in web_data.studies.values() if x.patient_id == s.patient_id]
    assert b["total"] == len(ionising)
    assert client.get(reverse("web:api_fhir_observation", kwargs={"obs_id": "nope"})).status_code == 404


def test_alert_list_pages_by_keyset(web_data):
    from dosereg.exposure.models import Alert

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token " + _token("t-rso"))
    expected = list(Alert.objects.order_by("-pk").values_list("pk", flat=True))
    assert len(expected) >= 2
    seen, url, pages = [], reverse("web:api_alerts") + "?status=all&page_size=1", 0
    while url:
        body = api.get(url).json()
        assert len(body["results"]) == 1
        seen += [a["id"] for a in body["results"]]
        url, pages = body["next"], pages + 1
    assert seen == expected and pages == len(expected)
    assert api.get(reverse("web:api_alerts") + "?page_size=0").status_code == 400
    assert api.get(reverse("web:api_alerts") + "?cursor=abc").status_code == 400
