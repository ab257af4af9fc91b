"""RSO cases: one case per procedure with all its levels, one e-mail per escalation, back-fills without e-mail,
the worklist's true counts and order, the actions and their timeline — through the real ingest pipeline."""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dosereg.audit.models import AuditEvent
from dosereg.cases import selectors, services
from dosereg.cases.formatting import fmt_value, public_text
from dosereg.cases.models import Case, CaseAlert, CaseEvent
from dosereg.exposure.models import Alert
from dosereg.notifications.models import Notification
from tests.conftest import require
from tests.exposure.builders import rf_rdsr

pytestmark = pytest.mark.django_db
UTC = dt.timezone.utc


def recent(days: int = 2) -> dt.datetime:
    return (timezone.now() - dt.timedelta(days=days)).replace(microsecond=0)


def test_high_dose_procedure_is_one_case_with_every_level_and_one_email(tmp_path, import_file, rso_users, smtp_server, settings):
    settings.SITE_URL = "https://dosereg.hospital.test"
    when = recent()
    import_file(rf_rdsr(tmp_path, when=when, kar=7.4, kap=520, fluoro_s=3700, station="CATHLAB1"))
    alerts = list(Alert.objects.all())
    assert len(alerts) >= 7  # Ka,r first, subsequent +1..+4, SRDL; KAP first and SRDL; fluoroscopy time
    case = Case.objects.get()
    assert case.kind == "procedure" and case.severity == "high" and case.top_level == "srdl" and case.status == "open"
    assert CaseAlert.objects.filter(case=case).count() == len(alerts) == case.level_count
    assert case.exam_date == when and case.device.station_name == "CATHLAB1" and case.modality == "RF"
    assert set(filter(None, case.rule_keys.split(","))) == {a.rule_key for a in alerts}
    # one e-mail per RSO for the whole procedure
    assert len(smtp_server.messages) == 2
    assert Notification.objects.count() == 2 and {a.notified for a in alerts} == {"queued", "collapsed"}
    body = smtp_server.messages[0].get_payload(decode=True).decode()
    assert f"https://dosereg.hospital.test/alerts/{case.pk}/" in body
    assert f"Exam date: {timezone.localtime(when):%Y-%m-%d %H:%M}" in body and "Device: " in body
    assert "dose-standards" not in body and "§" not in body and "✔" not in body and "◐" not in body
    assert "Gy" in body and "e+0" not in body  # values in the rule's units, no scientific notation
    assert re.search(r"fluoroscopy time|Fluoroscopy time", body)
    assert "HIGH" in str(smtp_server.messages[0]["Subject"]) and "exam " in str(smtp_server.messages[0]["Subject"])
    events = [e.action for e in CaseEvent.objects.filter(case=case)]
    assert events == ["raised", "notified"]


def test_new_levels_join_the_open_case_and_email_only_when_the_class_rises(tmp_path, import_file, rso_users, smtp_server):
    when = recent()
    uid = "2.25.777000111"
    imp = lambda n, kar: import_file(rf_rdsr(tmp_path, when=when + dt.timedelta(minutes=20 * n), kar=kar, kap=5,  # noqa: E731
                                             study_uid=uid, sop_uid=f"{uid}.{n}"))
    imp(1, 4.2)  # first + subsequent +1: one case, one e-mail per RSO
    case = Case.objects.get()
    assert case.top_level == "subsequent+1" and len(smtp_server.messages) == 2
    imp(2, 0.9)  # 5.1 Gy in the procedure: +2 and the SRDL (a higher class): one escalation e-mail, not one per level
    case.refresh_from_db()
    assert Case.objects.count() == 1 and case.top_level == "srdl" and case.escalated_at is not None
    assert len(smtp_server.messages) == 4 and "escalated" in str(smtp_server.messages[-1]["Subject"])
    imp(3, 1.0)  # 6.1 Gy: +3, a lower class than the SRDL: joins the case, no e-mail
    case.refresh_from_db()
    assert Case.objects.count() == 1 and len(smtp_server.messages) == 4
    assert [e.action for e in CaseEvent.objects.filter(case=case)] == ["raised", "notified", "escalated", "notified", "level_added"]
    assert case.level_count == CaseAlert.objects.filter(case=case).count() == Alert.objects.count()


def test_backfilled_old_study_opens_a_case_without_email_and_the_worklist_says_why(tmp_path, import_file, rso_users,
                                                                                     smtp_server, settings, client, rso):
    settings.ALERT_NOTIFY_MAX_AGE_DAYS = 30
    import_file(rf_rdsr(tmp_path, when=dt.datetime(2016, 4, 5, 10, 0, tzinfo=UTC), kar=6.0, kap=100))
    case = Case.objects.get()
    assert case.notify_state == "historical" and "older than 30 days" in case.notify_note
    assert smtp_server.messages == [] and Notification.objects.count() == 0
    assert set(Alert.objects.values_list("notified", flat=True)) <= {"historical", "collapsed"}
    client.force_login(rso)
    html = client.get(reverse("cases:worklist")).content.decode()
    assert f'data-case-row="{case.pk}"' in html and "ALERT_NOTIFY_MAX_AGE_DAYS" in html and "2016-04-05" in html
    # a recent study still e-mails
    import_file(rf_rdsr(tmp_path, when=recent(), kar=3.3, kap=10, patient_id="NEW-1"))
    assert len(smtp_server.messages) == 3  # the two RSOs of the fixture and this test's RSO


def test_notify_age_limit_defaults_to_30_days_in_the_settings(tmp_path):
    """The declared default, read by a fresh process without the suite's override (tests/conftest.py)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ALERT_NOTIFY_MAX_AGE_DAYS"}
    code = ("import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'dosereg.settings'); django.setup(); "
            "from django.conf import settings; from dosereg.cases import conf; "
            "print(settings.ALERT_NOTIFY_MAX_AGE_DAYS, conf.notify_max_age_days())")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["30", "30"]
    env["ALERT_NOTIFY_MAX_AGE_DAYS"] = "0"  # 0: no limit
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=str(Path(__file__).resolve().parents[2]))
    assert out.stdout.split() == ["0", "None"], out.stderr


@pytest.mark.parametrize("configured", ["default", 30])
def test_notify_age_limit_a_31_day_old_exam_opens_a_case_without_email_a_29_day_old_one_emails(
        configured, tmp_path, import_file, rso_users, smtp_server, settings, client, rso):
    if configured == "default":
        del settings.ALERT_NOTIFY_MAX_AGE_DAYS  # as an installation that never set it: conf's default (30 days)
    else:
        settings.ALERT_NOTIFY_MAX_AGE_DAYS = configured
    old_exam = timezone.now() - dt.timedelta(days=31)
    import_file(rf_rdsr(tmp_path, when=old_exam, kar=6.0, kap=100, patient_id="OLD-31"))
    old = Case.objects.get()
    assert old.notify_state == "historical" and smtp_server.messages == [] and Notification.objects.count() == 0
    assert f"the exam ({old.exam_date:%Y-%m-%d}) is older than 30 days (ALERT_NOTIFY_MAX_AGE_DAYS)" in old.notify_note
    assert [e.action for e in CaseEvent.objects.filter(case=old)][0] == "raised"
    import_file(rf_rdsr(tmp_path, when=timezone.now() - dt.timedelta(days=29), kar=6.0, kap=100, patient_id="NEW-29"))
    new = Case.objects.exclude(pk=old.pk).get()
    assert new.notify_state == "queued" and len(smtp_server.messages) == 3  # the fixture's two RSOs and this test's
    # the worklist and the case page say why the old one sent no e-mail, and count it; the new one has no such note
    client.force_login(rso)
    html = client.get(reverse("cases:worklist")).content.decode()
    row_old = html[html.index(f'data-case-row="{old.pk}"'):]
    row_old = row_old[:row_old.index("</tr>")]
    row_new = html[html.index(f'data-case-row="{new.pk}"'):]
    row_new = row_new[:row_new.index("</tr>")]
    assert "data-nomail" in row_old and "older than 30 days" in row_old and "data-nomail" not in row_new
    assert re.search(r'data-count="historical"[^>]*><span class="n">1</span> without e-mail', html)
    page = client.get(reverse("cases:detail", kwargs={"case_id": old.pk})).content.decode()
    assert "data-nomail" in page and "older than 30 days" in page


def _bulk_cases(n: int, *, start: dt.datetime) -> list[Case]:
    rows = [Case(key=f"procedure:2.25.9{i:06d}", kind="procedure", severity="high", sort_rank=services.sort_rank("procedure", "high"),
                 title=f"Procedure: Ka,r substantial radiation dose level {i}", exam_date=start + dt.timedelta(hours=i),
                 opened_at=timezone.now(), top_level="srdl", top_rule_key="fgi-kar-srdl", rule_keys=",fgi-kar-srdl,",
                 site="northfield general hospital", modality="RF") for i in range(n)]
    return Case.objects.bulk_create(rows)


def test_200_open_cases_none_hidden_and_pregnancy_on_top(tmp_path, import_file, client, rso):
    # an older pregnancy exam (normal priority: chest, no dose level) ...
    import_file(rf_rdsr(tmp_path, when=recent(30), kar=0.05, kap=2, pregnancy=2, region="chest", patient_id="PREG-1"))
    preg = Case.objects.get(kind="pregnancy")
    # ... and 199 newer high-severity cases
    _bulk_cases(199, start=recent(20))
    active = Case.objects.filter(status__in=["open", "acknowledged", "follow_up"]).count()
    assert active == 200
    client.force_login(rso)
    html = client.get(reverse("web:dashboard")).content.decode()
    assert re.search(r'data-kpi="alerts">200<', html)
    first_row = re.search(r'data-case-row="(\d+)"', html).group(1)
    assert int(first_row) == preg.pk  # at the top of the dashboard's list
    seen = []
    for page in range(1, 5):
        page_html = client.get(reverse("cases:worklist") + f"?page={page}").content.decode()
        ids = [int(x) for x in re.findall(r'data-case-row="(\d+)"', page_html)]
        seen += ids
        assert re.search(r"<span class=\"n\">200</span> active", page_html)
    assert seen[0] == preg.pk and len(seen) == len(set(seen)) == 200
    # severity, then exam date (newest first) after the pregnancy case
    order = list(Case.objects.filter(pk__in=seen[1:]).order_by("-exam_date").values_list("pk", flat=True))
    assert seen[1:] == order
    counts = selectors.counts()
    assert counts["total"] == 200 and counts["pregnancy"] == 1 and counts["high"] == 200
    # the dashboard is the top of this same list, with the same counts, both as the database has them
    dash_ids = [int(x) for x in re.findall(r'data-case-row="(\d+)"', html)]
    assert dash_ids == seen[:len(dash_ids)] and len(dash_ids) == 10
    assert "top 10 of 200 open cases" in html and "Open the worklist (200)" in html
    db = {sev: Case.objects.filter(status__in=["open", "acknowledged", "follow_up"], severity=sev).count() for sev in ("high", "normal", "low")}
    assert selectors.dashboard()["counts"] == counts and {k: counts[k] for k in db} == db
    assert counts["pregnancy"] == Case.objects.filter(kind="pregnancy", status__in=["open", "acknowledged", "follow_up"]).count()
    assert re.search(r'data-kpi="alerts">200<', html) and "open cases (200 high)" in html


def test_worklist_and_case_page_read_a_fixed_number_of_queries(tmp_path, import_file, rso):
    import_file(rf_rdsr(tmp_path, when=recent(), kar=7.4, kap=520, fluoro_s=3700))
    case = Case.objects.get()

    def count(fn):
        with CaptureQueriesContext(connection) as q:
            fn()
        return len(q.captured_queries)
    wl = lambda: selectors.worklist(filters=selectors.Filters())  # noqa: E731
    cd = lambda: selectors.case_detail(case_id=case.pk)  # noqa: E731
    dash = lambda: selectors.dashboard()  # noqa: E731
    few = (count(wl), count(cd), count(dash))
    _bulk_cases(120, start=recent(10))
    many = (count(wl), count(cd), count(dash))
    # the case page: 8 (its skin-dose basis reads the procedure's computed peak skin dose, then Ka,r)
    assert few == many and many[0] <= 5 and many[1] <= 8 and many[2] <= 4, (few, many)


def test_filters_search_paging_and_csv(tmp_path, import_file, client, rso):
    import_file(rf_rdsr(tmp_path, when=recent(3), kar=3.3, kap=10, patient_id="FILTER-A", station="ROOM-A"))
    import_file(rf_rdsr(tmp_path, when=recent(40), kar=0.05, kap=2, pregnancy=2, patient_id="FILTER-B", station="ROOM-B"))
    client.force_login(rso)

    def ids(query):
        html = client.get(reverse("cases:worklist") + query).content.decode()
        return {int(x) for x in re.findall(r'data-case-row="(\d+)"', html)}
    proc, preg = Case.objects.get(kind="procedure"), Case.objects.get(kind="pregnancy")
    assert ids("") == {proc.pk, preg.pk}
    assert ids("?kind=pregnancy") == {preg.pk}
    assert ids("?q=filter-a") == {proc.pk}
    assert ids(f"?device={proc.device_id}") == {proc.pk}
    assert ids("?rule=fgi-kar-first") == {proc.pk}
    assert ids("?from=" + (timezone.localdate() - dt.timedelta(days=10)).isoformat()) == {proc.pk}
    assert ids("?modality=CT") == set()
    assert ids("?severity=low") == set()
    assert ids("?kind=bogus") == {proc.pk, preg.pk}  # a malformed filter is ignored and named
    text = b"".join(client.get(reverse("cases:export")).streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "case" and {r[5] for r in rows[1:]} == {"FILTER-A", "FILTER-B"}


def test_acknowledge_follow_up_close_with_timeline_and_audit(tmp_path, import_file, client, rso, physicist):
    import_file(rf_rdsr(tmp_path, when=recent(40), kar=5.6, kap=100))
    case = Case.objects.get()
    url = reverse("cases:detail", kwargs={"case_id": case.pk})
    act = lambda a, **data: client.post(reverse("cases:action", kwargs={"case_id": case.pk, "action": a}), data)  # noqa: E731
    # physicists read, never act
    client.force_login(physicist)
    assert client.get(url).status_code == 200
    assert 'id="acknowledge"' not in client.get(url).content.decode()
    assert act("acknowledge", note="x").status_code == 403
    client.force_login(rso)
    html = client.get(url).content.decode()
    assert "Ka,r" in html and "5.6 Gy" in html and "5 Gy" in html and "substantial radiation dose level" in html
    assert 'id="acknowledge"' in html and 'id="follow-up"' in html and 'id="close"' in html
    # the rule's suggested date (exam + 28 d) has passed: the form defaults relative to today
    default = services.follow_up_default(case)
    assert default == timezone.localdate() + dt.timedelta(days=14)
    assert f'value="{default.isoformat()}"' in html
    assert act("acknowledge", note="operator informed").status_code == 302
    case.refresh_from_db()
    assert case.status == "acknowledged" and case.acknowledged_by == rso and case.acknowledge_note == "operator informed"
    assert set(Alert.objects.values_list("status", flat=True)) == {"acknowledged"}
    assert act("acknowledge").status_code == 302  # twice: refused, named on the page, nothing changed
    past = (timezone.localdate() - dt.timedelta(days=1)).isoformat()
    act("follow_up", due=past, note="x")
    case.refresh_from_db()
    assert case.status == "acknowledged"
    due = (timezone.localdate() + dt.timedelta(days=21)).isoformat()
    act("follow_up", due=due, note="skin check by dermatology")
    case.refresh_from_db()
    assert case.status == "follow_up" and case.follow_up_due.isoformat() == due
    assert case.pk in {r["id"] for r in selectors.due_list()}
    # closing a procedure case needs the skin outcome, and a grade when a reaction was observed
    act("close", skin_reaction="observed")
    case.refresh_from_db()
    assert case.status == "follow_up"
    act("close", skin_reaction="observed", skin_grade="1", note="faint erythema at 3 weeks")
    case.refresh_from_db()
    assert case.status == "closed" and case.outcome["skin_grade"] == "1" and "CTCAE" in case.outcome["skin_grade_source"]
    assert set(Alert.objects.values_list("status", flat=True)) == {"closed"}
    html = client.get(url).content.decode()
    for text in ("Case opened", "Acknowledged by", "operator informed", "Follow-up scheduled", f"due {due}",
                 "skin check by dermatology", "Closed by", "faint erythema at 3 weeks", "Skin reaction: observed; Grade: 1"):
        assert text in html, text
    changes = AuditEvent.objects.filter(action="change", object_type="case", object_id=str(case.pk))
    assert changes.count() == 3 and set(changes.values_list("username", flat=True)) == {"case-rso"}
    assert AuditEvent.objects.filter(action="view", object_type="case", object_id=str(case.pk), username="case-phys").exists()


def test_pregnancy_case_closes_with_a_conceptus_estimate(tmp_path, import_file, client, rso):
    import_file(rf_rdsr(tmp_path, when=recent(), kar=0.2, kap=20, pregnancy=2, region="abdomen", patient_id="PREG-2"))
    case = Case.objects.get(kind="pregnancy")
    assert case.severity == "high" and case.sort_rank > services.sort_rank("procedure", "high")
    client.force_login(rso)
    assert "conceptus-dose estimate is requested" in client.get(reverse("cases:detail", kwargs={"case_id": case.pk})).content.decode()
    url = reverse("cases:action", kwargs={"case_id": case.pk, "action": "close"})
    client.post(url, {"conceptus_dose_mgy": "3.5"})  # no method: refused
    case.refresh_from_db()
    assert case.status == "open"
    client.post(url, {"conceptus_dose_mgy": "3.5", "conceptus_method": "physicist_calculation", "note": "fetus outside field"})
    case.refresh_from_db()
    assert case.status == "closed" and case.outcome["conceptus_dose_mgy"] == 3.5 and case.outcome["conceptus_band"].startswith("< 50 mGy")
    alert = Alert.objects.get(quantity="pregnancy")
    assert alert.conceptus_dose_estimate_mgy == 3.5


def test_bulk_acknowledge_with_note(tmp_path, import_file, client, rso):
    import_file(rf_rdsr(tmp_path, when=recent(), kar=3.3, kap=10, patient_id="BULK-1"))
    import_file(rf_rdsr(tmp_path, when=recent(), kar=3.4, kap=10, patient_id="BULK-2"))
    ids = list(Case.objects.values_list("pk", flat=True))
    client.force_login(rso)
    r = client.post(reverse("cases:bulk_acknowledge"), {"ids": ids, "note": "reviewed at the Monday meeting"})
    assert r.status_code == 302
    assert set(Case.objects.values_list("status", "acknowledge_note")) == {("acknowledged", "reviewed at the Monday meeting")}


def test_backfill_builds_cases_from_existing_alerts(tmp_path, import_file):
    from dosereg.cases.backfill import backfill
    from dosereg.staff.models import StaffAlert

    import_file(rf_rdsr(tmp_path, when=recent(), kar=7.4, kap=520))
    import_file(rf_rdsr(tmp_path, when=recent(), kar=0.1, kap=5, pregnancy=2, region="abdomen", patient_id="BF-2"))
    n_alerts = Alert.objects.count()
    keys = set(Case.objects.values_list("key", "kind", "level_count"))
    Alert.objects.update(status="acknowledged", acknowledged_at=timezone.now())
    Case.objects.all().delete()
    assert backfill(Case, CaseAlert, CaseEvent, Alert, StaffAlert) == len(keys)
    assert set(Case.objects.values_list("key", "kind", "level_count")) == keys
    assert CaseAlert.objects.count() == n_alerts and set(Case.objects.values_list("status", flat=True)) == {"acknowledged"}
    assert backfill(Case, CaseAlert, CaseEvent, Alert, StaffAlert) == 0  # again: nothing new


def test_citations_and_values_read_as_plain_text():
    assert public_text("AAPM Dose Check Guidelines v1.0; NEMA XR 25 — dose-standards.md §4.3") == "AAPM Dose Check Guidelines v1.0; NEMA XR 25"
    assert public_text("NCRP Report 168 (2010) ✔; (dose-standards §4.1)") == "NCRP Report 168 (2010);"
    assert "(unverified)" in public_text("AAPM 1000 mGy ⚠")
    # through dosereg.formatting, the one home: fluoroscopy time as min:s, Ka,r in Gy, grouping as on every page
    assert fmt_value("fluoro_time_s", 3670) == "61:10 min:s" and fmt_value("fluoro_time_s", 3600) == "60:00 min:s"
    assert fmt_value("kar_gy", 7.689) == "7.69 Gy" and fmt_value("kap_gy_cm2", 520.4) == "520 Gy·cm²"
    assert fmt_value("kar_gy", 0.25) == "0.25 Gy" and fmt_value("dlp_mgy_cm", 1234.6) == "1,235 mGy·cm"
    assert fmt_value("procedure_count", 3) == "3 procedures" and fmt_value("kar_gy", None) == "—"
    assert selectors.person_name("Fischer^Jonas") == "Jonas Fischer"


def test_dose_check_case_shows_the_reason_for_proceeding(tmp_path, import_file, client, rso):
    from dosereg.rdsr.builder import CTDoseCheckSpec
    from tests.exposure.builders import ct_rdsr

    dc = CTDoseCheckSpec(ctdivol_notification_value_mgy=50, ctdivol_forward_estimate_mgy=62,
                         reason_for_proceeding="Large patient; protocol approved", authorizing_person="Dr Who")
    import_file(ct_rdsr(tmp_path, when=recent(), ctdivol=62.0, dlp=2000.0, region="abdomen", protocol="Abdomen routine", dose_check=dc))
    case = Case.objects.get(kind="dose_check")
    assert Case.objects.filter(kind="procedure", study_uid=case.study_uid).exists()  # the CTDIvol level: the procedure's case
    client.force_login(rso)
    html = client.get(reverse("cases:detail", kwargs={"case_id": case.pk})).content.decode()
    assert "Large patient; protocol approved" in html and 'name="dose_check_review"' in html
    client.post(reverse("cases:action", kwargs={"case_id": case.pk, "action": "close"}), {"dose_check_review": "justified"})
    case.refresh_from_db()
    assert case.status == "closed" and case.outcome == {"dose_check_review": "justified"}


def test_follow_up_reminder_once_per_due_date(tmp_path, import_file, rso, smtp_server):
    import_file(rf_rdsr(tmp_path, when=recent(), kar=3.3, kap=10))
    case = Case.objects.get()
    services.case_follow_up(case_id=case.pk, user=rso, due=timezone.localdate() + dt.timedelta(days=3), note="skin check")
    assert services.case_follow_up_reminders_send() == 0
    later = timezone.localdate() + dt.timedelta(days=3)
    assert services.case_follow_up_reminders_send(today=later) == 1
    assert services.case_follow_up_reminders_send(today=later) == 0
    n = Notification.objects.filter(dedupe_key__startswith=f"case:{case.pk}:follow-up-due:")
    assert n.count() == 1 and n.get().recipient == "case-rso@hospital.test" and f"/alerts/{case.pk}/" in n.get().body
    assert CaseEvent.objects.filter(case=case, action="follow_up_reminder").count() == 1


def test_a_case_whose_levels_all_no_longer_hold_is_withdrawn(tmp_path, import_file):
    import_file(rf_rdsr(tmp_path, when=recent(), kar=3.4, kap=10, patient_id="WD-1"))
    import_file(rf_rdsr(tmp_path, when=recent(), kar=4.4, kap=10, patient_id="WD-2"))
    one, two = Case.objects.get(patient__patient_id="WD-1"), Case.objects.get(patient__patient_id="WD-2")
    # as a recompute withdraws them (study replaced or deleted): every level of case one, one level of case two
    gone = list(Alert.objects.filter(patient__patient_id="WD-1").values_list("pk", flat=True))
    gone.append(Alert.objects.filter(patient__patient_id="WD-2", level="first").values_list("pk", flat=True)[0])
    Alert.objects.filter(pk__in=gone).update(status="withdrawn")
    with CaptureQueriesContext(connection) as q:
        assert services.cases_on_withdrawn(gone, now=timezone.now()) == 1
    assert len(q.captured_queries) == 2
    one.refresh_from_db()
    two.refresh_from_db()
    assert one.status == "withdrawn" and two.status == "open"
    assert CaseEvent.objects.filter(case=one, action="withdrawn").count() == 1


def test_withdrawn_case_reopens_when_its_level_holds_again(tmp_path, import_file, rso_users, smtp_server):
    from dosereg.exposure.recompute import patient_exposure_recompute

    import_file(rf_rdsr(tmp_path, when=recent(), kar=3.4, kap=10, patient_id="RR-1"))
    case = Case.objects.get()
    alert = Alert.objects.get(rule_key="fgi-kar-first")
    sent = len(smtp_server.messages)
    Alert.objects.filter(pk=alert.pk).update(status="withdrawn")
    services.cases_on_withdrawn([alert.pk], now=timezone.now())
    case.refresh_from_db()
    assert case.status == "withdrawn"
    from dosereg.exposure.models import PatientExposureState

    PatientExposureState.objects.all().delete()  # inputs unchanged: make the recompute evaluate again
    patient_exposure_recompute(patient_id=alert.patient_id)
    case.refresh_from_db()
    alert.refresh_from_db()
    assert alert.status == "open" and case.status == "open" and len(smtp_server.messages) == sent
    assert CaseEvent.objects.filter(case=case, action="reopened").count() == 1


def test_deep_pages_are_the_ordered_list_cut_in_pages(client, rso, settings):
    settings.CASE_WORKLIST_PAGE_SIZE = 25
    _bulk_cases(130, start=recent(40))
    Case.objects.filter(pk__in=Case.objects.order_by("pk").values("pk")[:40]).update(severity="low", sort_rank=0)
    Case.objects.filter(pk__in=Case.objects.order_by("pk").values("pk")[40:50]).update(exam_date=None)
    expected = list(Case.objects.order_by("-sort_rank", F("exam_date").desc(nulls_last=True), "-id").values_list("pk", flat=True))
    client.force_login(rso)
    seen = []
    for page in range(1, 7):
        html = client.get(reverse("cases:worklist") + f"?page={page}").content.decode()
        seen += [int(x) for x in re.findall(r'data-case-row="(\d+)"', html)]
    assert seen == expected and len(seen) == 130  # page 6 holds the last 5; the undated cases after the dated ones


def test_due_list_pages_through_every_follow_up_overdue_first(client, rso, settings):
    settings.CASE_WORKLIST_PAGE_SIZE = 50
    cases = _bulk_cases(120, start=recent(40))
    today = timezone.localdate()
    for i, c in enumerate(cases):
        Case.objects.filter(pk=c.pk).update(status="follow_up", follow_up_due=today + dt.timedelta(days=(i % 30) - 10))
    client.force_login(rso)
    seen, dues = [], []
    for page in (1, 2, 3):
        html = client.get(reverse("cases:due") + f"?page={page}").content.decode()
        assert "120 cases in follow-up" in html and f"page {page} of 3" in html
        seen += [int(x) for x in re.findall(r'href="/alerts/(\d+)/"', html)]
        dues += re.findall(r'data-label="Due">(\d{4}-\d{2}-\d{2})', html)
        if page == 1:
            assert "overdue" in html and 'rel="next"' in html
    assert sorted(seen) == sorted(c.pk for c in cases) and len(seen) == 120  # none hidden, none twice
    assert dues == sorted(dues) and dues[0] == (today - dt.timedelta(days=10)).isoformat()
    assert selectors.due_page(page=3)["rows"][-1]["id"] == seen[-1]


def test_worklist_search_reads_patients_and_staff_through_trigram_indexes(tmp_path, import_file, client, rso):
    require(connection.vendor == "postgresql", "PostgreSQL (the search indexes are PostgreSQL's)")
    from dosereg.registry.models import Patient

    Patient.objects.bulk_create([Patient(patient_id=f"SRCH{i:05d}", issuer="T", name=f"Family{i}^Given{i}") for i in range(300)])
    import_file(rf_rdsr(tmp_path, when=recent(), kar=3.3, kap=10, patient_id="FINDME-77"))
    case = Case.objects.get()
    with connection.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")  # what the planner can use, whatever the table's size
        for q in ("findme-77", "Given12 Family12", "family1"):
            for qs, index in ((selectors.search_patients(q), "search_patient_name_trgm"), (selectors.search_staff(q), "search_staff_name_trgm")):
                sql, params = qs.values("pk").query.sql_with_params()
                cur.execute("EXPLAIN " + sql, params)
                plan = "\n".join(r[0] for r in cur.fetchall())
                assert index in plan and "Seq Scan" not in plan, plan
        # the ID is a prefix: one range of the btree (text_pattern_ops) index, not every ID sharing its trigrams
        sql, params = selectors.search_patients("FINDME").values("pk").query.sql_with_params()
        cur.execute("EXPLAIN " + sql, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
        assert "search_patient_id_prefix" in plan and "~>=~ 'FINDME'" in plan and "~<~ 'FINDMF'" in plan, plan
        cur.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'registry_patient' AND indexname LIKE 'search_%%'")
        assert sorted(r[0] for r in cur.fetchall()) == ["search_patient_id_prefix", "search_patient_name_trgm"]
    assert list(selectors.search_patients("srch0001").order_by("patient_id").values_list("patient_id", flat=True)) == [
        f"SRCH0001{i}" for i in range(10)]
    assert not selectors.search_patients("RCH0001").exists()  # a prefix, not a substring
    assert list(selectors.search_patients("Given12 Family12").values_list("patient_id", flat=True)) == ["SRCH00012"]
    client.force_login(rso)
    html = client.get(reverse("cases:worklist") + "?q=findme-7").content.decode()
    assert re.findall(r'data-case-row="(\d+)"', html) == [str(case.pk)]


def test_counts_kept_by_the_database_match_the_cases_through_every_change(monkeypatch):
    require(connection.vendor == "postgresql", "PostgreSQL (the counts are kept by a PostgreSQL trigger)")
    from dosereg.access.scope import SiteScope
    from dosereg.cases import case_counts
    from dosereg.cases.models import CaseCount

    def live(scope=selectors.EVERY_SITE):
        monkeypatch.setattr(case_counts, "kept", lambda: False)
        try:
            return selectors.counts(scope)
        finally:
            monkeypatch.undo()

    from dosereg.registry.models import Device

    site_a = SiteScope(frozenset({"northfield general hospital"}), ("Northfield General Hospital",))
    cases = _bulk_cases(60, start=recent(40))
    ids = [c.pk for c in cases]
    room_a = Device.objects.create(display_name="Room A", institution="Northfield General Hospital", modality="RF")
    room_b = Device.objects.create(display_name="Room B", institution="Northfield General Hospital", modality="XA")
    Case.objects.filter(pk__in=ids[::2]).update(device=room_a)
    Case.objects.filter(pk__in=ids[1::4]).update(device=room_b, modality="XA")
    Case.objects.filter(pk__in=ids[:10]).update(site="riverside clinic", kind="pregnancy", severity="normal",
                                              sort_rank=services.sort_rank("pregnancy", "normal"))
    Case.objects.filter(pk__in=ids[10:20]).update(status="acknowledged")
    Case.objects.filter(pk__in=ids[20:25]).update(status="follow_up", follow_up_due=timezone.localdate() + dt.timedelta(days=3))
    Case.objects.filter(pk__in=ids[25:30]).update(status="closed")
    Case.objects.filter(pk__in=ids[30:33]).update(notify_state="historical")
    Case.objects.filter(pk__in=ids[33:36]).delete()
    Case.objects.filter(pk__in=ids[36:40]).update(title="a change that moves no count")
    for scope in (selectors.EVERY_SITE, site_a):
        assert selectors.counts(scope) == live(scope)
    kept = selectors.counts()
    assert kept["total"] == 60 - 5 - 3 and kept["pregnancy"] == 10 and kept["due"] == 5 and kept["historical"] == 3
    assert kept["normal"] == 10 and kept["high"] == 42 and kept["open"] == 60 - 10 - 5 - 5 - 3  # acknowledged, follow-up, closed, deleted
    # compaction: one row per key, the same counts
    assert CaseCount.objects.count() > 10
    left = case_counts.compact()
    keys = Case.objects.values_list(*case_counts.KEY_COLUMNS).distinct().count()  # site ... notify_state, device, modality
    assert left == CaseCount.objects.count() == keys and selectors.counts() == kept
    # the worklist's filtered totals (kind, severity, status, site) read the kept counts, and agree with the cases
    # (and the device and modality, since 0009: a case moved to another device or modality moves its count)
    Case.objects.filter(pk__in=ids[4:6]).update(device=room_b)
    Case.objects.filter(pk__in=ids[8:9]).update(modality="CT")
    Case.objects.filter(pk__in=ids[45:47]).update(device=None)
    for query in ({"kind": "pregnancy"}, {"severity": "normal"}, {"status": "all"}, {"status": "closed"},
                  {"site": "Riverside Clinic", "kind": "pregnancy"}, {"kind": "procedure", "severity": "high", "status": "follow_up"},
                  {"device": room_a.pk}, {"device": room_b.pk, "severity": "high"}, {"modality": "XA"}, {"modality": "CT"},
                  {"modality": "RF", "device": room_a.pk, "status": "all"}, {"device": room_b.pk, "kind": "pregnancy"}):
        f = selectors.Filters(**query)
        assert selectors.kept_total(selectors.EVERY_SITE, f) == f.apply(Case.objects.all()).count() > 0, query
        assert selectors.worklist(filters=f)["total"] == f.apply(Case.objects.all()).count()
    assert selectors.kept_total(site_a, selectors.Filters(device=room_a.pk)) == Case.objects.filter(
        site="northfield general hospital", device=room_a, status__in=["open", "acknowledged", "follow_up"]).count() > 0
    assert selectors.kept_total(selectors.EVERY_SITE, selectors.Filters(rule="fgi-kar-srdl", device=room_a.pk)) is None
    assert selectors.kept_total(selectors.EVERY_SITE, selectors.Filters(device=room_a.pk, q="x")) is None
    assert selectors.kept_total(selectors.EVERY_SITE, selectors.Filters(kind="procedure", date_from=timezone.localdate())) is None
    # and it goes on counting after the compaction
    services_case = Case.objects.filter(pk__in=ids[40:41])
    services_case.update(status="closed")
    assert selectors.counts()["total"] == kept["total"] - 1 == live()["total"]
    # the rules' counts (0011): each rule of a case's rule_keys, as the filter reads them
    Case.objects.filter(pk__in=ids[10:14]).update(rule_keys=",fgi-kar-first,fgi-kar-srdl,")
    Case.objects.filter(pk__in=ids[14:16]).update(rule_keys=",fgi-kar-first,")
    Case.objects.filter(pk__in=ids[16:17]).update(rule_keys=",ct-dlp,fgi-kar-fir")  # cut off: "fgi-kar-fir" is no rule
    Case.objects.filter(pk__in=ids[11:12]).update(status="closed")
    Case.objects.filter(pk__in=ids[12:13]).delete()
    case_counts.compact()
    Case.objects.filter(pk__in=ids[13:14]).update(rule_keys=",ct-dlp,")  # after the compaction
    for query in ({"rule": "fgi-kar-srdl"}, {"rule": "fgi-kar-first"}, {"rule": "fgi-kar-first", "status": "all"},
                  {"rule": "ct-dlp", "status": "acknowledged"}, {"rule": "fgi-kar-srdl", "kind": "pregnancy", "site": "riverside clinic"},
                  {"rule": "fgi-kar-first", "status": "closed"}, {"rule": "fgi-kar-fir", "status": "all"}, {"rule": "nosuch"}):
        f = selectors.Filters(**query)
        assert selectors.kept_total(selectors.EVERY_SITE, f) == f.apply(Case.objects.all()).count(), query
        assert selectors.worklist(filters=f)["total"] == f.apply(Case.objects.all()).count()
    assert selectors.kept_total(site_a, selectors.Filters(rule="fgi-kar-first", status="all")) == selectors.scoped(site_a).filter(
        rule_keys__contains=",fgi-kar-first,").count() == 4  # 10, 11 (closed), 14, 15; 12 deleted, 13 and 16 moved off it


def test_worklist_filters_read_their_own_indexes():
    """The device, modality, exam-date and rule filters (migration 0010): their rows and totals from an index of
    their own, not from a walk of every active case in worklist order (1.8 s for a device at 900,000 cases)."""
    require(connection.vendor == "postgresql", "PostgreSQL (the worklist's indexes are PostgreSQL's)")
    from dosereg.registry.models import Device

    room = Device.objects.create(display_name="Room A", institution="Northfield General Hospital", modality="XA")
    start = recent(40)
    ids = [c.pk for c in _bulk_cases(300, start=start)]  # an hour apart
    Case.objects.filter(pk__in=ids[::10]).update(device=room, modality="XA", rule_keys=",fgi-kar-first,")
    day = timezone.localtime(start + dt.timedelta(hours=100)).date()  # one day of the 12.5

    def plan(f: selectors.Filters, *, total: bool) -> str:
        qs = f.apply(selectors.scoped())
        qs = qs if total else qs.order_by(*selectors.ORDER).values("pk")[:50]
        sql, params = (qs.values("pk").query if total else qs.query).sql_with_params()
        with connection.cursor() as cur:
            cur.execute(("EXPLAIN SELECT count(*) FROM (" + sql + ") t") if total else "EXPLAIN " + sql, params)
            return "\n".join(r[0] for r in cur.fetchall())
    with connection.cursor() as cur:
        cur.execute("ANALYZE cases_case")
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute("SET LOCAL enable_sort = off")  # the rows in worklist order from an index (at any table size)
        assert "case_worklist_device" in plan(selectors.Filters(device=room.pk), total=False)
        assert "case_worklist_modality" in plan(selectors.Filters(modality="XA"), total=False)
        cur.execute("SET LOCAL enable_sort = on")
        cur.execute("SET LOCAL enable_bitmapscan = off")  # the total of a day: the range of one index, index-only
        for f in (selectors.Filters(date_from=day, date_to=day), selectors.Filters(site="Northfield General Hospital", date_from=day, date_to=day)):
            assert "case_exam_site" in plan(f, total=True), plan(f, total=True)
        # a rule few cases have: the trigram index on the active cases' rule_keys (the planner takes it at scale, where
        # it knows the rule's share from rule_keys' statistics: bench/RESULTS.md; a 300-case table reads faster without)
        cur.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'case_rule_keys_trgm'")
        assert "gin (rule_keys gin_trgm_ops) WHERE" in cur.fetchone()[0]
    # and the rows are the filter's, in worklist order
    for query, expected in (({"device": room.pk}, ids[::10]), ({"modality": "XA"}, ids[::10]), ({"rule": "fgi-kar-first"}, ids[::10]),
                            ({"rule": "no-such-rule"}, [])):
        got = selectors.worklist(filters=selectors.Filters(**query), page_size=50)
        assert [r["id"] for r in got["rows"]] == sorted(expected, reverse=True) and got["total"] == len(expected), query
