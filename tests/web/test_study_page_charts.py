"""Study page (issue 17 part 3) and charts that do not mislead (part 2): event types in words, descriptions without
carets, no empty KPI tiles or per-plane card on CT, long event lists collapsed, PS3.5 person names; every week of
the device trend present (a silent week is 0), the history chart's data on dates."""
from __future__ import annotations

import re
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from dosereg import formatting as fmt
from dosereg.registry.models import IrradiationEvent, Participant, Study
from dosereg.web import selectors


def test_person_names_event_types_and_descriptions():
    assert fmt.person_name("Yamada^Tarou=山田^太郎=やまだ^たろう") == "Tarou Yamada (山田 太郎)"
    assert fmt.person_name("=山田^太郎=やまだ^たろう") == "山田 太郎"
    assert fmt.person_name("Alpha^Ann") == "Ann Alpha"
    assert fmt.person_name("Okafor^Ngozi^^Dr") == "Dr Ngozi Okafor"
    assert fmt.person_name("Smith^John^^^Jr") == "John Smith, Jr"
    assert fmt.person_name("") == "" and fmt.person_name("Plain") == "Plain"
    assert fmt.event_type("ct_spiral") == "CT spiral" and fmt.event_type("fluoroscopy") == "Fluoroscopy"
    assert fmt.event_type("new_kind") == "New kind" and fmt.event_type("") == fmt.MISSING
    assert fmt.description("CT^Chest^^abdomen") == "CT Chest abdomen"


def test_ct_study_page(web_data, login):
    d = web_data
    s = d.studies["c_ct2"]
    types = set(IrradiationEvent.objects.filter(study=s).values_list("event_type", flat=True))
    assert "ct_spiral" in types
    Study.objects.filter(pk=s.pk).update(study_description="CT^Chest^routine")
    Participant.objects.create(study=s, dose_object=s.dose_objects.first(), name="Yamada^Tarou=山田^太郎=やまだ^たろう",
                               role="irradiation_administering")
    html = login(d.users["physicist"]).get(reverse("web:study_detail", kwargs={"pk": s.pk})).content.decode()
    body = re.sub(r"<script.*?</script>", "", html, flags=re.S)  # the chart's JSON keeps the codes
    text = re.sub(r"<[^>]+>", " ", body)  # what is read (the filters' option values and row attributes keep codes)
    assert "CT · CT Chest routine" in body and "^" not in body
    assert all(fmt.event_type(t) in text for t in types) and not any(t in text for t in types)
    assert "Tarou Yamada (山田 太郎)" in body
    assert "Per plane" not in body and "KAP Gy·cm²</span>" not in body and "fluoro time" not in body  # no empty tiles
    assert "DLP mGy·cm</span>" in body and "Pitch" in body and "Phantom" in body
    assert 'tabindex="0" role="region" aria-label="Irradiation events' in body


def test_long_event_lists_are_collapsed(web_data, login):
    d = web_data
    s = d.studies["a_angio"]
    n = IrradiationEvent.objects.filter(study=s).count()
    assert n > 50
    html = login(d.users["rso"]).get(reverse("web:study_detail", kwargs={"pk": s.pk})).content.decode()
    assert f"Show the other {n - 50} events" in html
    first, rest = html.split("data-more-events", 1)
    assert first.split("data-events-table")[1].count("<tr data-type=") == 50
    assert rest.count("<tr data-type=") == n - 50
    assert "Per plane" in html and "Ka,r Gy (largest plane)" in html


def test_device_trend_has_every_week(web_data):
    d = web_data
    now = timezone.now()
    t = selectors.device_trends(now=now)
    assert len(t["weeks"]) in (13, 14)  # 12 weeks back, from the Monday of the first one to this week's
    weeks = [timezone.datetime.fromisoformat(w).date() for w in t["weeks"]]
    assert all(w.weekday() == 0 for w in weeks) and all((b - a).days == 7 for a, b in zip(weeks, weeks[1:]))
    ct_dev = d.studies["c_ct"].device_id
    pts = t["series"][ct_dev]
    assert [p["week"] for p in pts] == t["weeks"]  # every week, the silent ones as 0 with no mean
    assert sum(p["n"] for p in pts) == Study.objects.filter(device_id=ct_dev, study_datetime__gte=now - timedelta(weeks=12),
                                                            not_patient_reason="").count()
    silent = [p for p in pts if p["n"] == 0]
    assert silent and all(p["dlp"] is None for p in silent)


def test_history_chart_points_carry_their_dates(web_data, login):
    d = web_data
    resp = login(d.users["rso"]).get(reverse("web:patient_history", kwargs={"pk": d.patients["a"].pk}))
    html = resp.content.decode()
    for q in ("kap", "kar", "dlp"):
        assert f'data-chart="history" data-q="{q}"' in html
    assert all(p["t"] for p in resp.context["chart"] if p["label"] != "undated")


def test_a_device_silent_for_the_whole_window_is_drawn_at_zero(web_data):
    from dosereg.registry.models import Device

    quiet = Device.objects.create(display_name="Quiet room", institution="Northfield General Hospital", modality="RF")
    ctx = selectors.dashboard(now=timezone.now())
    line = next(dv for dv in ctx["trends"]["devices"] if dv["id"] == quiet.pk)
    assert line["name"] == "Quiet room" and [p["n"] for p in line["points"]] == [0] * len(ctx["trends"]["weeks"])
