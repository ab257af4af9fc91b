"""Page content, fixed query counts, dashboard actions, protocol audit and exports."""
from __future__ import annotations

import csv
import io
import random
import tracemalloc
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dosereg.registry.models import DoseObject, Study
from dosereg.web import selectors, services
from dosereg.protocols.models import DRLValue, ProtocolMapping, StandardName

from .data import build_registry

# the most queries each page may run, whatever the data size (sessions/auth/audit included)
MAX_QUERIES = {"dashboard": 21,  # 21: the flagged-studies card (one query)
               "patient_history": 17, "study_detail": 16, "protocol_audit": 12, "portal": 12}


def _count(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def _more_data(tmp_path, n: int):
    """n more studies for every patient/device (bulk copies), to show the counts do not grow."""
    rows = []
    base = list(Study.objects.all())
    rng = random.Random(1)
    for i in range(n):
        s = rng.choice(base)
        rows.append(Study(study_instance_uid=f"2.25.{i}.{rng.randrange(10**9)}", patient_id=s.patient_id, device_id=s.device_id,
                          study_datetime=timezone.now() - timedelta(days=rng.randrange(300)), study_description=s.study_description,
                          procedure_modality=s.procedure_modality, dap_total_gy_cm2=s.dap_total_gy_cm2,
                          dlp_total_mgy_cm=s.dlp_total_mgy_cm, ctdivol_max_mgy=s.ctdivol_max_mgy, event_count=0))
    Study.objects.bulk_create(rows, batch_size=1000)


def test_query_counts_are_bounded(web_data, client, tmp_path):
    d = web_data
    urls = {
        "dashboard": ("rso", reverse("web:dashboard")),
        "patient_history": ("rso", reverse("web:patient_history", kwargs={"pk": d.patients["a"].pk})),
        "study_detail": ("physicist", reverse("web:study_detail", kwargs={"pk": d.studies["a_angio"].pk})),
        "protocol_audit": ("physicist", reverse("web:protocol_audit")),
        "portal": ("patient", reverse("web:portal")),
    }
    first = {}
    for name, (role, url) in urls.items():
        client.force_login(d.users[role])
        first[name] = _count(client, url)
        assert first[name] <= MAX_QUERIES[name], (name, first[name])
    _more_data(tmp_path, 400)
    for name, (role, url) in urls.items():
        client.force_login(d.users[role])
        assert _count(client, url) == first[name], name


def test_selector_query_counts(web_data, django_assert_max_num_queries):
    now = timezone.now()
    with django_assert_max_num_queries(13):  # 13: the flagged-studies card (one query)
        selectors.dashboard(now=now)
    with django_assert_max_num_queries(9):
        selectors.patient_history(patient=web_data.patients["a"], now=now)
    with django_assert_max_num_queries(5):
        selectors.protocol_audit(since=now - timedelta(days=365), until=now)
    with django_assert_max_num_queries(5):
        selectors.portal_exams(patient=web_data.patients["a"])


def test_history_lists_all_exams_in_time_order_with_mr(web_data, client):
    client.force_login(web_data.users["physicist"])
    html = client.get(reverse("web:patient_history", kwargs={"pk": web_data.patients["a"].pk})).content.decode()
    order = [html.index(x) for x in ("Barium swallow", "CT Chest", "Intraoperative MRI head", "Coronary angiography")]
    assert order == sorted(order)
    assert "No ionising dose" in html and "SAR 1.4 W/kg" in html
    assert "Pregnancy" in html and "possibly pregnant" in html  # exposure alert + study flag
    assert "12 weeks" in html  # cumulative windows


def test_study_detail_shows_events_and_participants(web_data, client):
    s = web_data.studies["a_angio"]
    client.force_login(web_data.users["rso"])
    html = client.get(reverse("web:study_detail", kwargs={"pk": s.pk})).content.decode()
    assert f"Irradiation events <span class=\"muted small\">{s.event_count}" in html
    assert "Participants" in html and "events-data" in html


def test_dashboard_sections_and_acknowledge_without_reload(web_data, client):
    from dosereg.exposure.models import Alert

    client.force_login(web_data.users["rso"])
    html = client.get(reverse("web:dashboard")).content.decode()
    for text in ("Worklist", "Pregnancy flags", "Highest cumulative exposure", "Trends per device", "Ingest health",
                 "Quarantine", "not a DICOM file", "Barium swallow"):
        assert text in html, text
    alert = Alert.objects.filter(status="open").order_by("-severity", "pk").first()
    assert f'data-case-row="{alert.case_link.case_id}"' in html  # the top of the worklist: the alert's case
    r = client.post(reverse("web:alert_action", kwargs={"alert_id": alert.pk, "action": "acknowledge"}),
                    HTTP_X_REQUESTED_WITH="fetch")
    assert r.status_code == 200 and r.json()["alert"]["status"] == "acknowledged"
    assert r.json()["alert"]["actions"] == ["follow_up", "close"]
    r = client.post(reverse("web:alert_action", kwargs={"alert_id": alert.pk, "action": "follow_up"}),
                    {"due": "2030-01-02"}, HTTP_X_REQUESTED_WITH="fetch")
    assert r.json()["alert"]["due_at"] == "2030-01-02"
    # physicists see the inbox but cannot act on it
    client.force_login(web_data.users["physicist"])
    assert 'class="inline js-alert-action"' not in client.get(reverse("web:dashboard")).content.decode()


def test_quarantine_reprocess_button(web_data, client):
    obj = web_data.quarantined[0]
    client.force_login(web_data.users["rso"])
    r = client.post(reverse("web:quarantine_reprocess"), {"ids": [obj.pk]}, HTTP_X_REQUESTED_WITH="fetch")
    assert r.json() == {"ok": True, "count": 1}
    obj.refresh_from_db()
    assert obj.status == DoseObject.STATUS_QUARANTINED and obj.attempts >= 2  # re-extracted, still broken


def test_ingest_health_flags_silent_and_new_devices(web_data):
    now = timezone.now()
    dev = web_data.studies["b_dx"].device
    # a device that used to send every day and stopped 5 days ago
    DoseObject.objects.bulk_create([DoseObject(sop_instance_uid=f"1.2.3.{i}", path="x", device=dev, status="ingested")
                                    for i in range(20)])
    DoseObject.objects.filter(device=dev).update(received_at=now - timedelta(days=5))
    h = selectors.ingest_health(now=now)
    row = next(r for r in h["rows"] if r["device"].pk == dev.pk)
    assert row["silent"] and dev in [r["device"] for r in h["silent"]]
    assert all(r["new"] for r in h["rows"])  # every device first seen during the test


def test_protocol_mapping_suggestion_and_drl_comparison(web_data, client):
    std = StandardName.objects.get(modality="RF", name="Coronary angiography")
    sugg = services.suggest_standard_name("CORO ANGIO", "XA", list(StandardName.objects.all()))
    assert sugg == std
    assert services.suggest_standard_name("CT CHEST W/O", "CT", list(StandardName.objects.all())).name.startswith("Chest")
    client.force_login(web_data.users["physicist"])
    page = client.get(reverse("web:protocol_names")).content.decode()
    assert "Coronary angiography" in page and "% confidence" in page
    r = client.post(reverse("web:protocol_names"), {"name": "RF:Coronary angiography", "standard_name": std.pk,
                                                    "confirm": "yes"})
    assert r.status_code == 302
    now = timezone.now()
    audit = selectors.protocol_audit(since=now - timedelta(days=365), until=now + timedelta(days=1))
    row = next(r for r in audit["rows"] if r["standard_name"] == std)
    assert row["n"] == 1 and row["too_small"] and row["min_n"] == 30
    kap = next(q for q in row["quantities"] if q["key"] == "dap_total_gy_cm2")
    assert {c["drl"].drl_set.name for c in kap["drls"]} == {"Swiss national fluoroscopy RLs (Aroua 2007)",
                                                          "ESR white paper interventional RLs"}
    s = web_data.studies["a_angio"]
    assert kap["median"] == pytest.approx(s.dap_total_gy_cm2)
    html = client.get(reverse("web:protocol_audit")).content.decode()
    assert "n &lt; 30" in html and "<svg class=\"boxplot\"" in html and "Aroua" in html
    dist = client.get(reverse("web:protocol_distribution") + f"?quantity=dap_total_gy_cm2&device_id={s.device_id}&std={std.pk}").json()
    assert dist["values"] == [pytest.approx(s.dap_total_gy_cm2)]
    # editable DRL values; an rso may read but not edit
    sset = DRLValue.objects.filter(standard_name=std).first().drl_set
    r = client.post(reverse("web:drl_sets"), {"val-drl_set": sset.pk, "val-standard_name": std.pk,
                                              "val-quantity": "dap_total_gy_cm2", "val-value": "42"})
    assert r.status_code == 302 and DRLValue.objects.get(drl_set=sset, standard_name=std).value == 42


def test_quartiles_match_between_python_and_database(web_data):
    assert selectors._quartiles([1, 2, 3, 4, 5]) == (2, 3, 4)
    assert selectors._quartiles([1.0, 2.0, 3.0, 4.0]) == (1.75, 2.5, 3.25)  # = percentile_cont
    assert selectors._quartiles([]) == (None, None, None)


def test_csv_and_xlsx_exports(web_data, client):
    from openpyxl import load_workbook

    client.force_login(web_data.users["physicist"])
    r = client.get(reverse("web:protocol_export", kwargs={"kind": "studies", "fmt": "csv"}))
    assert r.streaming and r["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode("utf-8-sig"))))
    n = Study.objects.filter(has_ionising_dose=True).count()
    assert rows[0][0] == "study_datetime" and len(rows) == n + 1
    r = client.get(reverse("web:protocol_export", kwargs={"kind": "studies", "fmt": "xlsx"}))
    wb = load_workbook(io.BytesIO(b"".join(r.streaming_content)), read_only=True)
    sheet = list(wb.active.iter_rows(values_only=True))
    assert sheet[0][0] == "study_datetime" and len(sheet) == n + 1
    r = client.get(reverse("web:protocol_export", kwargs={"kind": "events", "fmt": "csv"}))
    rows = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode("utf-8-sig"))))
    assert "pulse_rate_per_s" in rows[0] and len(rows) > 10
    r = client.get(reverse("web:patient_history_export", kwargs={"pk": web_data.patients["a"].pk}))
    assert b"Intraoperative MRI head" in b"".join(r.streaming_content)


def test_csv_formula_injection_is_neutralised(web_data, client):
    Study.objects.filter(pk=web_data.studies["b_dx"].pk).update(study_description="=HYPERLINK(\"http://x\")")
    client.force_login(web_data.users["physicist"])
    r = client.get(reverse("web:protocol_export", kwargs={"kind": "studies", "fmt": "csv"}))
    assert "'=HYPERLINK" in b"".join(r.streaming_content).decode("utf-8-sig")


def test_csv_export_streams_in_constant_memory(db, client, django_user_model):
    """30k rows stream with a small, bounded peak (no list of rows is ever built)."""
    from dosereg.web.services import user_create

    now = timezone.now()
    Study.objects.bulk_create([
        Study(study_instance_uid=f"2.25.9{i}", study_datetime=now - timedelta(minutes=i), procedure_modality="RF",
              study_description=f"Procedure {i % 40}", dap_total_gy_cm2=i * 0.01, event_count=1)
        for i in range(30000)], batch_size=2000)
    client.force_login(user_create(username="p", password="x-Long-pass-1", role="physicist"))
    r = client.get(reverse("web:protocol_export", kwargs={"kind": "studies", "fmt": "csv"}))
    tracemalloc.start()
    lines = 0
    for chunk in r.streaming_content:
        lines += chunk.count(b"\n")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines == 30001
    assert peak < 12 * 1024 * 1024, peak
