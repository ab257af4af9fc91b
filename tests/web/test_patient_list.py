"""The patients list (/patients/, issue 17 part 5): true counts and paging, sort by any column, search by Patient ID
or any word of the name (every PS3.5 component group), cumulative columns from the exposure app's 12-month window,
site scope, a fixed query count; and the history's "all time" row. Real rows: the web tests' builder-made RDSRs
sent through the real ingest (tests/web/data.py, site_data.py)."""
from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dosereg.access.scope import EVERY_SITE, NO_SITE, scope_for
from dosereg.exposure import windows as W
from dosereg.exposure.models import PatientExposureWindow
from dosereg.pipeline import flow
from dosereg.registry.models import Patient, Study
from dosereg.web import patient_browse as PB

URL = "/patients/"


def _filters(**kw):
    return PB.read_filters({k: str(v) for k, v in kw.items()})


def _ids(resp) -> list[int]:
    assert resp.status_code == 200
    return [r["pk"] for r in resp.context["page"].rows]


def test_lists_every_patient_with_true_count_newest_exam_first(web_data, login):
    d = web_data
    c = login(d.users["rso"])
    resp = c.get(URL)
    page = resp.context["page"]
    assert page.count == Patient.objects.filter(merged_into__isnull=True).count() == 3
    # newest exam first: c (3 days ago), b (5), a (10)
    assert _ids(resp) == [d.patients[k].pk for k in ("c", "b", "a")]
    row = {r["pk"]: r for r in page.rows}[d.patients["a"].pk]
    assert row["n_studies"] == Study.objects.filter(patient=d.patients["a"]).count() == 4
    assert row["last_study"] == d.studies["a_angio"].study_datetime
    html = resp.content.decode()
    assert "3 patients" in html and "1–3 of 3" in html and "Ann Alpha" in html


def test_cumulative_columns_are_the_exposure_apps_12_month_window(web_data, login):
    d = web_data
    c = login(d.users["physicist"])
    rows = {r["pk"]: r for r in c.get(URL).context["page"].rows}
    for key in ("a", "b", "c"):
        w = PatientExposureWindow.objects.get(patient=d.patients[key], anchor_study__isnull=True, window_days=365)
        r = rows[d.patients[key].pk]
        assert (r["cum_kap_gy_cm2"], r["cum_kar_gy"], r["cum_dlp_mgy_cm"], r["cum_effective_dose_msv"]) == (
            w.kap_gy_cm2, w.kar_max_gy, w.dlp_mgy_cm, w.effective_dose_msv)
    a = rows[d.patients["a"].pk]
    assert a["cum_kap_gy_cm2"] > 0 and a["cum_dlp_mgy_cm"] > 0  # angio + RF, and a CT
    assert rows[d.patients["b"].pk]["cum_dlp_mgy_cm"] is None  # no CT: not reported, never 0
    html = c.get(URL).content.decode()
    assert "last 12 months, all sites" in html and "population-average estimate" in html


@pytest.mark.parametrize("key,field", [("kap", "cum_kap_gy_cm2"), ("dlp", "cum_dlp_mgy_cm"), ("kar", "cum_kar_gy"),
                                        ("exams", "n_studies"), ("last", "last_study"), ("born", "birth_date")])
def test_sort_by_each_column_both_ways_nulls_last(web_data, login, key, field):
    c = login(web_data.users["physicist"])
    down = c.get(URL + f"?sort=-{key}").context["page"].rows
    up = c.get(URL + f"?sort={key}").context["page"].rows
    known_down = [r[field] for r in down if r[field] is not None]
    known_up = [r[field] for r in up if r[field] is not None]
    assert known_down == sorted(known_down, reverse=True) and known_up == sorted(known_up)
    n_known = len(known_down)
    assert all(r[field] is None for r in down[n_known:]) and all(r[field] is None for r in up[n_known:])
    html = c.get(URL + f"?sort={key}").content.decode()
    assert f'aria-sort="ascending" data-col="{key}"' in html


def test_sort_by_name_and_id(web_data, login):
    d = web_data
    c = login(d.users["rso"])
    assert _ids(c.get(URL + "?sort=name")) == [d.patients[k].pk for k in ("a", "b", "c")]  # Alpha, Beta, Gamma
    assert _ids(c.get(URL + "?sort=-id")) == [d.patients[k].pk for k in ("c", "b", "a")]
    # an unknown column is ignored and named, never a 500
    resp = c.get(URL + "?sort=password")
    assert resp.status_code == 200 and "is not a column" in resp.content.decode()


def test_paging_has_true_count_and_every_patient_once(web_data, login):
    for i in range(25):
        Patient.objects.create(patient_id=f"PX{i:04d}", name=f"Extra^Person{i}", sex="O")
    c = login(web_data.users["rso"])
    seen: list[int] = []
    for n in (1, 2, 3):
        page = c.get(URL + f"?per_page=10&page={n}&sort=id").context["page"]
        assert (page.count, page.pages, page.page) == (28, 3, n)
        seen += [r["pk"] for r in page.rows]
    assert len(seen) == 28 and set(seen) == set(Patient.objects.values_list("pk", flat=True))
    assert c.get(URL + "?per_page=10&page=3").context["page"].first_index == 21
    # a page past the end is the last page; a page size not offered is ignored and named
    assert c.get(URL + "?per_page=10&page=99").context["page"].page == 3
    resp = c.get(URL + "?per_page=7")
    assert resp.context["page"].page_size == PB.DEFAULT_PAGE_SIZE and "is not one of" in resp.content.decode()
    html = c.get(URL + "?per_page=10&page=2&sort=id&q=P").content.decode()
    assert 'href="?sort=id&amp;q=P&amp;per_page=10&amp;page=3"' in html or "page=3" in html


def test_search_by_id_prefix_and_every_word_of_the_name(web_data, login):
    d = web_data
    c = login(d.users["rso"])
    assert set(_ids(c.get(URL + "?q=PW000"))) == {p.pk for p in d.patients.values()}
    assert _ids(c.get(URL + "?q=pw0002")) == [d.patients["b"].pk]
    assert _ids(c.get(URL + "?q=alpha")) == [d.patients["a"].pk]
    assert _ids(c.get(URL + "?q=Ann+Alpha")) == [d.patients["a"].pk]  # words in any order, any component
    assert _ids(c.get(URL + "?q=Ann+Beta")) == []
    resp = c.get(URL + "?q=nobody")
    assert resp.context["page"].count == 0 and "No patients found." in resp.content.decode()


def test_multi_script_name_found_by_each_group_and_rendered_per_ps35(web_data, login):
    p = Patient.objects.create(patient_id="PJ0001", name="Yamada^Tarou=山田^太郎=やまだ^たろう", sex="M")
    c = login(web_data.users["rso"])
    for q in ("yamada", "山田", "たろう", "Tarou Yamada"):
        assert _ids(c.get(URL, {"q": q})) == [p.pk], q
    html = c.get(URL, {"q": "PJ0001"}).content.decode()
    # alphabetic group in reading order, then the ideographic group, family name first; no carets or '='
    assert "<td data-name>Tarou Yamada (山田 太郎)</td>" in html
    assert "Yamada^Tarou" not in html


def test_merged_record_not_listed_its_exams_count_for_the_survivor(web_data, login, django_capture_on_commit_callbacks):
    """Through the real merge and unmerge (each ends in the exposure step that keeps the record's exams and last
    exam date, which the list reads for a user of every site)."""
    d = web_data
    a, b, cc = d.patients["a"], d.patients["b"], d.patients["c"]
    with django_capture_on_commit_callbacks(execute=True):
        flow.patient_merge(source_id=b.pk, target_id=a.pk)
    c = login(d.users["rso"])
    rows = {r["pk"]: r for r in c.get(URL).context["page"].rows}
    assert set(rows) == {a.pk, cc.pk}
    assert rows[a.pk]["n_studies"] == Study.objects.filter(patient__in=[a, b]).count() == 6
    assert rows[a.pk]["last_study"] == d.studies["b_carm"].study_datetime
    assert _ids(c.get(URL + "?q=PW0002")) == []
    # newest exam first: c (3 days ago), then the survivor with b's last exam (5 days ago)
    assert _ids(c.get(URL)) == [cc.pk, a.pk]
    assert _ids(c.get(URL + "?sort=-exams")) == [a.pk, cc.pk]
    # a chain C -> B -> A (C merged into B while B was its own record): C's exams count for A too
    with django_capture_on_commit_callbacks(execute=True):
        flow.patient_unmerge(patient_id=b.pk, reingest=False)
    rows = {r["pk"]: r for r in c.get(URL).context["page"].rows}
    assert rows[a.pk]["n_studies"] == Study.objects.filter(patient=a).count() == 4
    assert rows[b.pk]["n_studies"] == Study.objects.filter(patient=b).count() == 2
    assert rows[b.pk]["last_study"] == d.studies["b_carm"].study_datetime
    assert _ids(c.get(URL)) == [cc.pk, b.pk, a.pk]
    with django_capture_on_commit_callbacks(execute=True):
        flow.patient_merge(source_id=cc.pk, target_id=b.pk)
        flow.patient_merge(source_id=b.pk, target_id=a.pk)
    rows = {r["pk"]: r for r in c.get(URL).context["page"].rows}
    assert set(rows) == {a.pk}
    assert rows[a.pk]["n_studies"] == Study.objects.count() == 8
    assert rows[a.pk]["last_study"] == d.studies["c_ct"].study_datetime


def test_deleting_a_study_updates_its_patients_exams_and_last_exam(web_data, login, django_capture_on_commit_callbacks):
    d = web_data
    a, b = d.patients["a"], d.patients["b"]
    c = login(d.users["rso"])
    before = {r["pk"]: r for r in c.get(URL).context["page"].rows}
    newest_b = Study.objects.filter(patient=b).order_by("-study_datetime").first()
    with django_capture_on_commit_callbacks(execute=True):
        newest_b.delete()
    rows = {r["pk"]: r for r in c.get(URL).context["page"].rows}
    assert rows[b.pk]["n_studies"] == before[b.pk]["n_studies"] - 1 == Study.objects.filter(patient=b).count()
    assert rows[b.pk]["last_study"] == Study.objects.filter(patient=b).order_by("-study_datetime").first().study_datetime
    assert rows[b.pk]["last_study"] < newest_b.study_datetime
    assert rows[a.pk] == before[a.pk]


def test_summary_matches_the_studies_for_every_patient(web_data, login):
    """The stored exams / last exam (every site) equal the aggregate the list computed before (the site-scoped
    path, which still aggregates), for every surviving record."""
    from django.db.models import Count, Max

    d = web_data
    c = login(d.users["rso"])
    rows = {r["pk"]: r for r in c.get(URL).context["page"].rows}
    want = {p["patient_id"]: p for p in Study.objects.values("patient_id").annotate(n=Count("pk"), last=Max("study_datetime"))}
    assert rows and all(r["n_studies"] == want[pk]["n"] and r["last_study"] == want[pk]["last"] for pk, r in rows.items())


def test_site_scope_lists_only_patients_at_the_sites_with_their_exams_there(site_data, web_data, login):
    d = site_data
    c = login(d.users["rso_a"])
    resp = c.get(URL)
    rows = {r["pk"]: r for r in resp.context["page"].rows}
    assert set(rows) == {d.patients["sa"].pk, d.patients["ab"].pk}
    assert resp.context["page"].count == 2
    assert rows[d.patients["ab"].pk]["n_studies"] == 1  # the exam at A, not the one at B
    assert rows[d.patients["ab"].pk]["last_study"] == d.studies["ab_a"].study_datetime
    html = resp.content.decode()
    assert "PSB0001" not in html and "PW0001" not in html and "sites:" in html
    assert _ids(c.get(URL + "?q=PSB")) == []
    assert PB.patient_page(_filters(), scope=NO_SITE).count == 0
    assert PB.patient_page(_filters(q="PS"), scope=EVERY_SITE).count == 3
    assert PB.patient_page(_filters(q="PS"), scope=scope_for(d.users["rso_b"])).count == 2


def test_query_count_is_fixed_whatever_the_page_size(web_data):
    for i in range(60):
        Patient.objects.create(patient_id=f"PQ{i:04d}", name=f"Query^Count{i}")
    counts = {}
    for size, sort in ((10, "-kap"), (200, "-kap"), (50, "name"), (200, "-effective")):
        with CaptureQueriesContext(connection) as ctx:
            page = PB.patient_page(_filters(per_page=size, sort=sort))
        assert page.count == 63 and len(page.rows) == min(size, 63)
        counts[(size, sort)] = len(ctx.captured_queries)
    assert set(counts.values()) == {2}, counts


def test_patients_page_query_count_bounded(web_data, login, django_assert_max_num_queries):
    for i in range(60):
        Patient.objects.create(patient_id=f"PQ{i:04d}", name=f"Query^Count{i}")
    c = login(web_data.users["rso"])
    c.get(URL)  # warm the session and the site-scope caches
    with django_assert_max_num_queries(12):
        assert c.get(URL + "?per_page=200&sort=-dlp").status_code == 200


def test_history_has_an_all_time_row(web_data, login):
    d = web_data
    a = d.patients["a"]
    c = login(d.users["rso"])
    resp = c.get(reverse("web:patient_history", kwargs={"pk": a.pk}))
    at = resp.context["all_time"]
    studies = list(Study.objects.filter(patient=a))
    assert at["studies"] == sum(1 for s in studies if s.has_ionising_dose) == 3  # the MR has no ionising dose
    assert at["dap_total_gy_cm2"] == pytest.approx(sum(s.dap_total_gy_cm2 or 0 for s in studies))
    assert at["dlp_mgy_cm"] == pytest.approx(d.studies["a_ct"].dlp_total_mgy_cm)
    # Ka,r: the largest per reference point and plane summed over the exams, never added across planes
    w = PatientExposureWindow.objects.get(patient=a, anchor_study__isnull=True, window_days=365)
    assert at["dose_rp_gy"] == pytest.approx(w.kar_max_gy)  # every exam of A is within 12 months
    html = resp.content.decode()
    assert "data-all-time" in html and "All time" in html


def _pt(i, at, **kw):
    return W.StudyPoint(study_id=i, at=at, **kw)


def test_all_time_totals_pure():
    t0 = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    pts = [
        _pt(1, t0, modality="XA", kap_gy_cm2=10.0, fluoro_time_s=60.0, kar={("IRP", "A"): 1.0, ("IRP", "B"): 0.5}),
        _pt(2, None, modality="XA", kap_gy_cm2=5.0, kar={("IRP", "A"): 0.75}),  # undated: still all time
        _pt(3, t0 + dt.timedelta(days=3000), modality="CT", dlp_mgy_cm=400.0, ctdivol_max_mgy=12.0,
            effective_dose_msv=5.6),
        _pt(4, t0 + dt.timedelta(days=10), ionising=False, modality="MR"),
    ]
    t = W.all_time_totals(pts)
    assert t.procedure_count == 3 and t.procedure_count_by_modality == {"XA": 2, "CT": 1}
    assert (t.kap_gy_cm2, t.fluoro_time_s, t.dlp_mgy_cm, t.ctdivol_max_mgy) == (15.0, 60.0, 400.0, 12.0)
    assert t.kar == {("IRP", "A"): 1.75, ("IRP", "B"): 0.5} and t.kar_max_gy == 1.75  # never 2.25
    assert (t.effective_dose_msv, t.effective_dose_studies) == (5.6, 1)
    assert (t.start, t.end) == (t0, t0 + dt.timedelta(days=3000))
    none = W.all_time_totals([_pt(5, t0, modality="MR", ionising=False)])
    assert none.procedure_count == 0 and none.kap_gy_cm2 is None and none.kar_max_gy is None


def test_sort_columns_first_click_largest_first():
    cols = {c["key"]: c for c in PB.sort_columns(SimpleNamespace(sort_key="kap", descending=True))}
    assert cols["kap"]["next"] == "kap" and cols["kap"]["state"] == "descending"
    assert cols["dlp"]["next"] == "-dlp" and cols["name"]["next"] == "name" and cols["dlp"]["state"] == "none"
