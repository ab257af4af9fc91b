"""The study browser (/studies/, issue 17 part 1): filters, sorting, true counts and paging, exports of exactly
the filtered set, query counts independent of the page size. Real rows: the web tests' builder-made RDSRs sent
through the real ingest (tests/web/data.py)."""
from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Exists, OuterRef
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dosereg.protocols.models import ProtocolMapping, StandardName
from dosereg.registry.models import IrradiationEvent, Study
from dosereg.web import browse

URL = "/studies/"


def _page_ids(resp) -> list[int]:
    assert resp.status_code == 200
    return [s.pk for s in resp.context["page"].rows]


def _csv(resp) -> list[list[str]]:
    assert resp.status_code == 200, resp.content[:300]
    return list(csv.reader(io.StringIO(b"".join(resp.streaming_content).decode("utf-8-sig"))))


def test_url_and_nav(web_data, login):
    assert reverse("web:study_browser") == URL
    c = login(web_data.users["physicist"])
    html = c.get(reverse("web:dashboard")).content.decode()
    assert f'href="{URL}"' in html and ">Studies<" in html


def test_every_study_listed_with_true_count_and_links(web_data, login):
    c = login(web_data.users["rso"])
    resp = c.get(URL)
    page = resp.context["page"]
    assert page.count == Study.objects.count() == len(web_data.studies)
    assert set(_page_ids(resp)) == {s.pk for s in web_data.studies.values()}
    html = resp.content.decode()
    for s in web_data.studies.values():
        assert f'href="{reverse("web:study_detail", kwargs={"pk": s.pk})}"' in html
    # newest first by default
    dates = [s.study_datetime for s in page.rows]
    assert dates == sorted(dates, reverse=True)


def test_modality_filter_and_sort_by_dlp(web_data, login):
    d = web_data
    c = login(d.users["physicist"])
    cts = [d.studies[k] for k in ("a_ct", "c_ct", "c_ct2")]
    ids = _page_ids(c.get(URL + "?modality=CT&sort=-dlp"))
    assert ids == [s.pk for s in sorted(cts, key=lambda s: -s.dlp_total_mgy_cm)]
    assert _page_ids(c.get(URL + "?modality=CT&sort=dlp")) == list(reversed(ids))
    # a sorted column says so (screen readers: aria-sort)
    html = c.get(URL + "?modality=CT&sort=dlp").content.decode()
    assert 'aria-sort="ascending" data-col="dlp"' in html


def test_dose_ranges_sex_age_and_text_filters(web_data, login):
    d = web_data
    c = login(d.users["physicist"])
    cts = sorted((d.studies[k] for k in ("a_ct", "c_ct", "c_ct2")), key=lambda s: s.dlp_total_mgy_cm)
    lo = cts[1].dlp_total_mgy_cm
    ids = _page_ids(c.get(URL + f"?dlp_mgy_cm_min={lo}"))
    assert set(ids) == {cts[1].pk, cts[2].pk}
    ids = _page_ids(c.get(URL + f"?dlp_mgy_cm_max={lo}&modality=CT"))
    assert set(ids) == {cts[0].pk, cts[1].pk}
    # KAP in Gy·cm² (the unit in the parameter name): above the hip fixation's own KAP there is no b_carm
    carm = d.studies["b_carm"]
    assert carm.pk not in _page_ids(c.get(URL + f"?kap_gy_cm2_min={carm.dap_total_gy_cm2 * 1.0001}"))
    assert carm.pk in _page_ids(c.get(URL + f"?kap_gy_cm2_min={carm.dap_total_gy_cm2}&kap_gy_cm2_max={carm.dap_total_gy_cm2}"))
    # sex of the patient: patient A is female
    assert set(_page_ids(c.get(URL + "?sex=F"))) == {s.pk for s in d.studies.values() if s.patient_id == d.patients["a"].pk}
    # all three patients are adults
    assert _page_ids(c.get(URL + "?age=child")) == []
    adults = {s.pk for s in d.studies.values() if s.patient_age_years is not None}
    assert adults and set(_page_ids(c.get(URL + "?age=18%2B"))) == adults
    # description text, case-insensitive; date range (inclusive days)
    assert set(_page_ids(c.get(URL + "?protocol=chest"))) == {d.studies[k].pk for k in ("a_ct", "c_ct", "c_ct2", "b_dx")}
    day = timezone.localtime(d.studies["c_ct"].study_datetime).date()
    assert _page_ids(c.get(URL + f"?since={day}&until={day}")) == [d.studies["c_ct"].pk]


def test_standard_name_and_not_a_patient_filters(web_data, login):
    d = web_data
    from dosereg.web.services import protocol_mapping_set

    std = StandardName.objects.create(name="Chest (test)", modality="CT")
    # through the mapping service, which keeps the studies' stored standard name (the unmapped filter reads it)
    protocol_mapping_set(modality="CT", source_name="CT Chest", standard_name=std)
    c = login(d.users["physicist"])
    resp = c.get(URL + f"?standard={std.pk}")
    assert set(_page_ids(resp)) == {d.studies["a_ct"].pk, d.studies["c_ct"].pk}
    assert "Chest (test)" in resp.content.decode()
    unmapped = set(_page_ids(c.get(URL + "?standard=0")))
    assert d.studies["c_ct2"].pk in unmapped and d.studies["a_ct"].pk not in unmapped
    assert unmapped == set(Study.objects.exclude(Exists(ProtocolMapping.objects.filter(
        modality=OuterRef("procedure_modality"), source_name=OuterRef("study_description")))).values_list("pk", flat=True))
    protocol_mapping_set(modality="CT", source_name="CT Chest", standard_name=None)  # unmapped again: listed again
    assert {d.studies["a_ct"].pk, d.studies["c_ct"].pk} <= set(_page_ids(c.get(URL + "?standard=0")))
    protocol_mapping_set(modality="CT", source_name="CT Chest", standard_name=std)
    Study.objects.filter(pk=d.studies["b_dx"].pk).update(not_patient_reason="phantom")
    assert _page_ids(c.get(URL + "?not_patient=only")) == [d.studies["b_dx"].pk]
    assert d.studies["b_dx"].pk not in _page_ids(c.get(URL + "?not_patient=exclude"))
    assert "not a patient" in c.get(URL + "?not_patient=only").content.decode()


def test_paging_is_complete_and_counts_are_true(web_data):
    f = browse.StudyFilters(page_size=3)
    seen = []
    for n in (1, 2, 3):
        f.page = n
        p = browse.study_page(f)
        assert p.count == 8 and p.pages == 3
        seen += [s.pk for s in p.rows]
    assert len(seen) == len(set(seen)) == 8
    f.page = 99  # beyond the end: the last page
    assert browse.study_page(f).page == 3


def test_invalid_filters_ignored_on_the_page_and_400_on_export(web_data, login):
    c = login(web_data.users["rso"])
    resp = c.get(URL + "?kap_gy_cm2_min=abc&modality=CT&sort=nonsense")
    assert resp.status_code == 200 and len(_page_ids(resp)) == 3
    html = resp.content.decode()
    assert "kap_gy_cm2_min" in html and "ignored" in html
    assert c.get(reverse("web:study_browser_export", kwargs={"fmt": "csv"}) + "?kap_gy_cm2_min=abc").status_code == 400
    assert c.get(reverse("web:study_browser_export", kwargs={"fmt": "csv"}) + "?sort=zzz").status_code == 400
    assert c.get("/studies/export.pdf").status_code == 404


def _more_studies(web_data, n: int) -> None:
    base = web_data.studies["c_ct"]
    now = timezone.now()
    Study.objects.bulk_create([
        Study(study_instance_uid=f"2.25.9999{i}", patient_id=base.patient_id, device_id=base.device_id,
              study_datetime=now - timedelta(hours=i), procedure_modality="CT", study_description=f"Extra CT {i}",
              dlp_total_mgy_cm=100.0 + i, ctdivol_max_mgy=5.0)
        for i in range(n)
    ])


def test_query_count_does_not_grow_with_the_page_size(web_data, login, django_assert_max_num_queries):
    _more_studies(web_data, 230)
    f = browse.StudyFilters(page_size=200, modality="CT", sort="-dlp")
    with django_assert_max_num_queries(2):
        p = browse.study_page(f)
    assert len(p.rows) == 200 and p.count == 233
    with django_assert_max_num_queries(2):
        browse.filter_options()
    c = login(web_data.users["rso"])
    counts = {}
    for size in (25, 200):
        with CaptureQueriesContext(connection) as q:
            resp = c.get(URL + f"?per_page={size}&sort=standard")
        assert resp.status_code == 200 and len(resp.context["page"].rows) == size
        counts[size] = len(q)
    assert counts[25] == counts[200] <= 14, counts


def test_csv_export_is_exactly_the_filtered_set(web_data, login):
    d = web_data
    Study.objects.filter(pk=d.studies["c_ct"].pk).update(study_description="CT Chest\x07\x1b with bell")
    c = login(d.users["physicist"])
    rows = _csv(c.get(reverse("web:study_browser_export", kwargs={"fmt": "csv"}) + "?modality=CT&sort=-dlp&page=2"))
    header, body = rows[0], rows[1:]
    for h in ("kap_total_gy_cm2", "ka_r_max_plane_gy", "dlp_total_mgy_cm", "ctdivol_max_mgy", "fluoro_time_total_s",
              "patient_sex", "study_instance_uid", "ctdi_phantom"):
        assert h in header
    uid, dlp = header.index("study_instance_uid"), header.index("dlp_total_mgy_cm")
    cts = sorted((Study.objects.get(pk=d.studies[k].pk) for k in ("a_ct", "c_ct", "c_ct2")), key=lambda s: -s.dlp_total_mgy_cm)
    assert [r[uid] for r in body] == [s.study_instance_uid for s in cts]  # every page, in the page's order
    assert [float(r[dlp]) for r in body] == pytest.approx([s.dlp_total_mgy_cm for s in cts])
    desc = [r[header.index("study_description")] for r in body]
    assert "CT Chest with bell" in desc and not any(ch in "".join(desc) for ch in "\x07\x1b")
    assert {r[header.index("patient_sex")] for r in body} == {"F", "M"}
    assert all(r[header.index("ctdi_phantom")] for r in body)
    # numbers carry no float noise
    assert all(len(r[dlp]) <= 12 for r in body)


def test_xlsx_export_sheets_header_frozen_filtered(web_data, login):
    from openpyxl import load_workbook

    d = web_data
    c = login(d.users["physicist"])
    resp = c.get(reverse("web:study_browser_export", kwargs={"fmt": "xlsx"}) + "?not_patient=all")
    assert resp.status_code == 200 and resp["Cache-Control"] == "no-store"
    wb = load_workbook(io.BytesIO(b"".join(resp.streaming_content)))
    mods = sorted({s.procedure_modality for s in d.studies.values()})
    assert wb.sheetnames == ["All studies", *[f"{m} studies" for m in mods], "CT series", "Projection events"]
    for ws in wb.worksheets:
        assert ws.freeze_panes == "A2", ws.title
        assert ws.auto_filter.ref == f"A1:{ws.cell(1, ws.max_column).column_letter}{ws.max_row}", ws.title
        assert ws.cell(1, 1).font.b
    all_rows = list(wb["All studies"].iter_rows(values_only=True))
    assert len(all_rows) - 1 == len(d.studies)
    assert "kap_total_gy_cm2" in all_rows[0] and "dlp_total_mgy_cm" in all_rows[0]
    ct = list(wb["CT series"].iter_rows(values_only=True))
    ct_studies = [d.studies[k].pk for k in ("a_ct", "c_ct", "c_ct2")]
    assert len(ct) - 1 == IrradiationEvent.objects.filter(study_id__in=ct_studies).count() > 3
    assert "ctdivol_mgy" in ct[0] and "dlp_mgy_cm" in ct[0] and "pitch_factor" in ct[0]
    proj = list(wb["Projection events"].iter_rows(values_only=True))
    proj_studies = [s.pk for s in d.studies.values() if s.procedure_modality in browse.PROJECTION_MODALITIES]
    assert len(proj) - 1 == IrradiationEvent.objects.filter(study_id__in=proj_studies).count()
    assert "kap_gy_cm2" in proj[0] and "ka_r_gy" in proj[0]
    kap = proj[0].index("kap_gy_cm2")
    assert all(v[kap] is None or isinstance(v[kap], float) for v in proj[1:])
    # a filtered export holds only that set
    resp = c.get(reverse("web:study_browser_export", kwargs={"fmt": "xlsx"}) + "?modality=CT")
    wb = load_workbook(io.BytesIO(b"".join(resp.streaming_content)))
    assert wb.sheetnames == ["All studies", "CT studies", "CT series"]
    assert wb["All studies"].max_row - 1 == 3


def test_modality_home_counts_and_medians_per_room(web_data, login, django_assert_max_num_queries):
    import statistics

    d = web_data
    cts = [Study.objects.get(pk=d.studies[k].pk) for k in ("a_ct", "c_ct", "c_ct2")]
    with django_assert_max_num_queries(2):
        ov = browse.modality_overview(modality="CT")
    assert len(ov["months"]) == 12 and ov["total"] == 3
    assert [q["key"] for q in ov["quantities"]] == ["dlp_total_mgy_cm", "ctdivol_max_mgy"]
    by_dev = {r["device"].pk: r for r in ov["rooms"]}
    assert set(by_dev) == {s.device_id for s in cts}
    for dev_id, room in by_dev.items():
        mine = [s for s in cts if s.device_id == dev_id]
        assert room["total"] == len(mine) and len(room["counts"]) == 12
        for i, first in enumerate(ov["months"]):
            inm = [s.dlp_total_mgy_cm for s in mine
                   if timezone.localtime(s.study_datetime).date().replace(day=1) == first]
            assert room["counts"][i] == len(inm)
            assert room["medians"]["dlp_total_mgy_cm"][i] == (pytest.approx(statistics.median(inm)) if inm else None)
    c = login(d.users["physicist"])
    resp = c.get(reverse("web:modality_home", kwargs={"modality": "ct"}))
    assert resp.status_code == 200
    html = resp.content.decode()
    assert "Median DLP per procedure" in html and 'data-chart="modality"' in html
    # a cell drills down to exactly its studies
    dev = cts[0].device_id
    first = timezone.localtime(cts[0].study_datetime).date().replace(day=1)
    i = list(ov["months"]).index(first)
    cell = next(r for r in resp.context["table"] if r["device"].pk == dev)["cells"][i]
    assert cell["link"].replace("&", "&amp;") in html.split(f'data-room="{dev}"')[1].split("</tr>")[0]
    href = URL + "?" + cell["link"]
    ids = _page_ids(c.get(href))
    assert sorted(ids) == sorted(s.pk for s in cts if s.device_id == dev
                                 and timezone.localtime(s.study_datetime).date().replace(day=1) == first)
    assert cts[0].pk in ids
    assert c.get("/studies/modality/XX/").status_code == 404
    assert "CT overview" in c.get(URL).content.decode()


def test_csv_export_of_the_page_as_shown(web_data, login):
    d = web_data
    _more_studies(d, 30)
    c = login(d.users["physicist"])
    q = "?modality=CT&sort=-dlp&per_page=10"
    shown = [s.pk for s in c.get(URL + q + "&page=2").context["page"].rows]
    rows = _csv(c.get(reverse("web:study_browser_export", kwargs={"fmt": "csv"}) + q + "&page=2&only=page"))
    uids = dict(Study.objects.filter(pk__in=shown).values_list("study_instance_uid", "pk"))
    got = [r[rows[0].index("study_instance_uid")] for r in rows[1:]]
    assert len(got) == 10 and [uids[u] for u in got] == shown
    assert len(_csv(c.get(reverse("web:study_browser_export", kwargs={"fmt": "csv"}) + q))) - 1 == 33


def test_rso_without_a_site_sees_no_study_when_unscoped_access_is_off(web_data, login, settings):
    settings.DOSEREG_RSO_UNSCOPED_SEES_ALL = False
    c = login(web_data.users["rso"])
    resp = c.get(URL)
    assert resp.context["page"].count == 0 and resp.context["options"]["devices"] == []
    assert len(_csv(c.get(reverse("web:study_browser_export", kwargs={"fmt": "csv"})))) == 1  # the header only
    assert "No CT procedures" in c.get(reverse("web:modality_home", kwargs={"modality": "CT"})).content.decode()
    settings.DOSEREG_RSO_UNSCOPED_SEES_ALL = True
    c = login(web_data.users["rso"])  # a fresh request user: the scope is cached per user object
    assert c.get(URL).context["page"].count == len(web_data.studies)


# ---------------------------------------------------------------------------
# the stored standard name (sorted from an index) and keyset paging
# ---------------------------------------------------------------------------
def test_stored_standard_name_follows_every_mapping_edit(web_data, login):
    from dosereg.web import services as WS

    d = web_data
    chest = WS.standard_name_create(name="Chest", modality="CT")
    abdomen = WS.standard_name_create(name="Abdomen", modality="CT")
    mapped = Study.objects.filter(procedure_modality="CT", study_description="CT Chest")
    assert set(mapped.values_list("pk", flat=True)) == {d.studies["a_ct"].pk, d.studies["c_ct"].pk}
    assert set(Study.objects.values_list("standard_name", flat=True)) == {None}
    WS.protocol_mapping_set(modality="CT", source_name="CT Chest", standard_name=chest)
    assert set(mapped.values_list("standard_name", flat=True)) == {"Chest"}
    assert Study.objects.exclude(pk__in=mapped).filter(standard_name__isnull=False).count() == 0
    c = login(d.users["physicist"])
    resp = c.get(URL + "?sort=standard")
    ids = _page_ids(resp)
    assert set(ids[:2]) == set(mapped.values_list("pk", flat=True))  # A to Z, unmapped last
    assert [s.standard_name for s in resp.context["page"].rows][:3] == ["Chest", "Chest", None]
    # re-mapped in bulk (the names page's path): the studies take the new name, in the same transaction
    changes = WS.protocol_mappings_apply(items=[("CT", "CT Chest")], standard_name=abdomen)
    assert changes and set(mapped.values_list("standard_name", flat=True)) == {"Abdomen"}
    assert "Abdomen" in c.get(URL + "?sort=-standard").content.decode()
    # unmapped: back to no name, sorted last either way
    WS.protocol_mapping_set(modality="CT", source_name="CT Chest", standard_name=None)
    assert set(Study.objects.values_list("standard_name", flat=True)) == {None}
    # a mapping of another modality with the same vendor name leaves these studies alone
    WS.protocol_mapping_set(modality="XA", source_name="CT Chest", standard_name=WS.standard_name_create(name="X", modality="XA"))
    assert set(mapped.values_list("standard_name", flat=True)) == {None}


def test_protocols_step_sets_the_name_of_ingested_studies(web_data, django_assert_max_num_queries):
    """The pipeline's protocols step (after each ingest, merge, reprocess) reads each study's mapped name with its
    bucket: no statement added per ingested object; one UPDATE only when a name changed."""
    from dosereg.protocols import services as PS

    d = web_data
    std = StandardName.objects.create(name="Chest (step)", modality="CT")
    ProtocolMapping.objects.create(modality="CT", source_name="CT Chest", standard_name=std)  # before the studies' step
    Study.objects.filter(pk=d.studies["c_ct2"].pk).update(standard_name="stale")
    ids = [d.studies[k].pk for k in ("a_ct", "c_ct", "c_ct2")]
    with django_assert_max_num_queries(4):  # names changed: the read, the names' UPDATE, members, buckets
        assert PS.studies_mark_dirty(ids) >= 1
    got = dict(Study.objects.filter(pk__in=ids).values_list("pk", "standard_name"))
    assert got == {d.studies["a_ct"].pk: "Chest (step)", d.studies["c_ct"].pk: "Chest (step)", d.studies["c_ct2"].pk: None}
    # the common case (an ingest's step: names already right) writes no name
    with django_assert_max_num_queries(3 if connection.vendor == "postgresql" else 4):
        assert PS.studies_mark_dirty(ids) >= 1
    assert dict(Study.objects.filter(pk__in=ids).values_list("pk", "standard_name")) == got


def _expected_order(f) -> list[int]:
    return list(browse.ordered(browse.filtered_studies(f), f).values_list("pk", flat=True))


def _walk(c, query: str, *, backwards: bool = False) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Follow the pager's next (or, from the last page, previous) links to the end; the rows seen in order and
    each page's (first row number, last row number, page number)."""
    url = URL + query + ("&end=1" if backwards else "")
    seen: list[list[int]] = []
    numbers = []
    for _ in range(100):
        resp = c.get(url)
        page = resp.context["page"]
        seen.append(_page_ids(resp))
        numbers.append((page.first_index, page.last_index, page.page))
        html = resp.content.decode()
        link = "previous" if backwards else "next"
        if f'data-page-link="{link}"' not in html:
            break
        cursor = page.first_pk if backwards else page.last_pk
        url = URL + query + (f"&before={cursor}" if backwards else f"&after={cursor}")
        assert url.replace("&", "&amp;") in html or url.split("?", 1)[1].replace("&", "&amp;") in html
    if backwards:
        seen.reverse()
        numbers.reverse()
    return [pk for rows in seen for pk in rows], numbers


@pytest.mark.parametrize("sort", ["-date", "date", "-kap", "kap", "-standard", "standard", "-dlp", "-site", "description"])
def test_keyset_pages_next_and_previous_cover_the_order_exactly(web_data, login, sort):
    """Next from the first page and previous from the last both visit every study once, in the page order, ties
    and empty values included (CT studies have no KAP; mapped and unmapped names; equal DLPs)."""
    from dosereg.web import services as WS

    _more_studies(web_data, 37)
    Study.objects.filter(study_description__in=["Extra CT 3", "Extra CT 4", "Extra CT 5", "Extra CT 6"]).update(dlp_total_mgy_cm=222.0)
    WS.protocol_mapping_set(modality="CT", source_name="Extra CT 7", standard_name=WS.standard_name_create(name="B", modality="CT"))
    WS.protocol_mappings_apply(items=[("CT", f"Extra CT {i}") for i in range(10, 20)],
                               standard_name=WS.standard_name_create(name="A", modality="CT"))
    c = login(web_data.users["physicist"])
    query = f"?sort={sort}&per_page=10"
    want = _expected_order(browse.read_filters({"sort": sort}))
    assert len(want) == 45
    forward, numbers = _walk(c, query)
    assert forward == want
    assert numbers == [(1 + 10 * i, min(45, 10 * (i + 1)), i + 1) for i in range(5)]
    backward, numbers = _walk(c, query, backwards=True)
    assert backward == want
    # from the last page (the 5 rows after the full pages) backwards: the same numbered pages
    assert numbers == [(1 + 10 * i, min(45, 10 * (i + 1)), i + 1) for i in range(5)]


def test_keyset_page_with_filters_counts_and_a_fixed_query_count(web_data, django_assert_max_num_queries):
    _more_studies(web_data, 30)
    f = browse.read_filters({"modality": "CT", "sort": "-dlp", "per_page": "10"})
    want = _expected_order(f)
    f.after = want[14]
    with django_assert_max_num_queries(2):
        p = browse.study_page(f)
    assert [s.pk for s in p.rows] == want[15:25] and (p.first_index, p.last_index, p.count) == (16, 25, 33)
    f.after, f.before = None, want[14]
    with django_assert_max_num_queries(2):
        p = browse.study_page(f)
    assert [s.pk for s in p.rows] == want[4:14] and p.first_index == 5
    f.before, f.end = None, True
    with django_assert_max_num_queries(2):
        p = browse.study_page(f)
    assert [s.pk for s in p.rows] == want[30:] and (p.first_index, p.last_index, p.page) == (31, 33, 4)
    # a jump by page number, read from the nearer end
    for n in (1, 2, 3, 4):
        f.end, f.page = False, n
        with django_assert_max_num_queries(2):
            p = browse.study_page(f)
        assert [s.pk for s in p.rows] == want[(n - 1) * 10:n * 10] and p.page == n


def test_csv_of_a_keyset_page_is_the_page_as_shown(web_data, login):
    _more_studies(web_data, 30)
    c = login(web_data.users["physicist"])
    q = "?modality=CT&sort=-dlp&per_page=10"
    first = c.get(URL + q).context["page"]
    for cursor, n in ((f"&after={first.last_pk}", 10), ("&end=1", 3), (f"&before={first.last_pk}", 9)):
        shown = _page_ids(c.get(URL + q + cursor))
        rows = _csv(c.get(reverse("web:study_browser_export", kwargs={"fmt": "csv"}) + q + cursor + "&only=page"))
        uids = dict(Study.objects.filter(pk__in=shown).values_list("study_instance_uid", "pk"))
        assert [uids[r[rows[0].index("study_instance_uid")]] for r in rows[1:]] == shown and len(shown) == n


def test_an_ingested_study_takes_its_mapped_standard_name_and_a_corrected_description_its_new_one(web_data, tmp_path):
    """Through the real ingest (``file_import``: parse, store, then the follow-up steps): a report whose study
    description is mapped arrives with the standard name stored; a corrected report of the same study with
    another description takes that one's name."""
    import random

    from dicom_listener.spool import Spool
    from dosereg.pipeline.flow import file_import
    from dosereg.rdsr import builder as B
    from dosereg.web import services as WS

    WS.protocol_mapping_set(modality="CT", source_name="CT Abdomen pelvis",
                            standard_name=WS.standard_name_create(name="Abdomen-pelvis", modality="CT"))
    WS.protocol_mapping_set(modality="CT", source_name="CT KUB",
                            standard_name=WS.standard_name_create(name="KUB", modality="CT"))
    spool = Spool(tmp_path / "spool")
    when = timezone.make_naive(timezone.now() - timedelta(days=2), timezone.get_default_timezone())
    spec = B.random_ct_spec(random.Random(7), patient_id="PSTD1", patient_name="Std^Name", study_datetime=when,
                            study_description="CT Abdomen pelvis")
    obj, _ = file_import(path=B.write(B.build_ct_rdsr(spec), tmp_path / "a.dcm"), spool=spool)
    assert obj.status == "ingested", obj.quarantine_reason
    assert Study.objects.get(pk=obj.study_id).standard_name == "Abdomen-pelvis"
    spec.study_description = "CT KUB"  # the same study (UID) re-sent with another description
    ds = B.build_ct_rdsr(spec)
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".2"
    obj2, _ = file_import(path=B.write(ds, tmp_path / "b.dcm"), spool=spool)
    assert obj2.status == "ingested" and obj2.study_id == obj.study_id, obj2.quarantine_reason
    s = Study.objects.get(pk=obj.study_id)
    assert (s.study_description, s.standard_name) == ("CT KUB", "KUB")


# --- sorts by a column of the study's device or patient (site, device, sex): on PostgreSQL read one value at a time
# from the existing indexes (dosereg.web.browse_groups); the order within a value is the device, then newest first

JOINED_SORTS = ["site", "-site", "device", "-device", "sex", "-sex"]


def _joined_sort_registry(web_data) -> None:
    """Besides the ingested studies: devices at two sites and at none (a blank site; a room named like another
    site's; a device without a name), studies without a device, without a patient, without a date, on equal dates;
    patients of every sex ('' not recorded)."""
    from dosereg.registry.models import Device, Patient

    now = timezone.now().replace(microsecond=0)
    devices = [Device.objects.create(display_name=name, institution=site, modality="CT") for name, site in (
        ("alpha room", "north hospital"), ("beta room", "north hospital"), ("alpha room", "south clinic"),
        ("zeta", ""), ("", "north hospital"))]
    patients = [Patient.objects.create(patient_id=f"PJ{i}", sex=sex) for i, sex in enumerate(["F", "M", "O", "", "F", "M"])]
    Study.objects.bulk_create([  # (patient_sex: the registry's copy of the record's sex, as its writers keep it)
        Study(study_instance_uid=f"2.25.8888{i}", device=None if i % 9 == 0 else devices[i % len(devices)],
              patient=None if i % 11 == 0 else patients[i % len(patients)],
              patient_sex="" if i % 11 == 0 else patients[i % len(patients)].sex,
              study_datetime=None if i % 13 == 5 else now - timedelta(days=i % 7),
              procedure_modality="CT" if i % 3 else "DX", study_description=f"Joined {i}")
        for i in range(40)])


def _python_order(sort: str, studies=None) -> list[int]:
    """The joined sort's order computed here, not by the code under test: the key (empty last), the device's
    name and id (empty last), newest first (no date last), the id descending."""
    key, desc = sort.lstrip("-"), sort.startswith("-")
    rows = list(studies if studies is not None else Study.objects.select_related("device", "patient"))

    def values(s):
        d, p = s.device, s.patient
        first = {"site": d.institution.lower() if d else None, "device": d.display_name.lower() if d else None,
                 "sex": p.sex if p else None}[key]
        middle = {"site": [(d.display_name.lower() if d else None, False), (d.pk if d else None, False)],
                  "device": [(d.pk if d else None, False)], "sex": []}[key]
        return [(first, desc)] + middle + [(s.study_datetime, True), (s.pk, True)]

    def term(s, i: int, down: bool):
        v = values(s)[i][0]
        return (not down, 0) if v is None else (down, v)

    for i in reversed(range(len(values(rows[0])))):  # stable sorts, the last term first; empty values last
        down = values(rows[0])[i][1]
        rows.sort(key=lambda s: term(s, i, down), reverse=down)
    return [s.pk for s in rows]


@pytest.mark.parametrize("sort", JOINED_SORTS)
@pytest.mark.parametrize("extra", ["", "&modality=CT", "&ionising=1"])
def test_joined_sorts_next_previous_and_row_numbers(web_data, login, sort, extra):
    """Next from the first page and previous from the last visit every study once in the order of the key (empty
    values, studies without a date, equal dates included), with exact row numbers; unfiltered or with a modality
    on PostgreSQL by the walk over the key's values, with another row filter by the plain order."""
    _joined_sort_registry(web_data)
    studies = Study.objects.select_related("device", "patient")
    narrow = {"": {}, "&modality=CT": {"procedure_modality": "CT"}, "&ionising=1": {"has_ionising_dose": True}}[extra]
    want = _python_order(sort, studies.filter(**narrow))
    f = browse.read_filters(dict([("sort", sort)] + [tuple(extra[1:].split("="))] if extra else [("sort", sort)]))
    assert browse.walks_groups(f) == (connection.vendor == "postgresql" and extra != "&ionising=1")
    assert _expected_order(f) == want
    c = login(web_data.users["physicist"])
    query = f"?sort={sort}&per_page=10{extra}"
    n = len(want)
    pages = [(1 + 10 * i, min(n, 10 * (i + 1)), i + 1) for i in range((n + 9) // 10)]
    forward, numbers = _walk(c, query)
    assert forward == want and numbers == pages
    backward, numbers = _walk(c, query, backwards=True)
    assert backward == want and numbers == pages


@pytest.mark.parametrize("sort", JOINED_SORTS)
def test_joined_sorts_go_to_page_last_page_and_cursor_pages(web_data, sort, django_assert_max_num_queries):
    _joined_sort_registry(web_data)
    want = _python_order(sort)
    f = browse.read_filters({"sort": sort, "per_page": "10"})
    for n in range(1, 6):  # a jump by page number, read from the nearer end
        f.page = n
        with django_assert_max_num_queries(2):
            p = browse.study_page(f)
        assert [s.pk for s in p.rows] == want[(n - 1) * 10:n * 10] and (p.page, p.count) == (n, 48)
    f.page, f.end = 1, True
    with django_assert_max_num_queries(2):
        p = browse.study_page(f)
    assert [s.pk for s in p.rows] == want[40:] and (p.first_index, p.last_index, p.page) == (41, 48, 5)
    f.end = False
    for i in (0, 1, 7, 23, 40, 46, 47):  # next and previous from a cursor anywhere, the group boundaries included
        f.after, f.before = want[i], None
        if i < 47:  # (after the last row, or before the first, there is no page: the pager links neither)
            with django_assert_max_num_queries(2):
                p = browse.study_page(f)
            assert [s.pk for s in p.rows] == want[i + 1:i + 11] and p.start == i + 1
        if i == 0:
            continue
        f.after, f.before = None, want[i]
        with django_assert_max_num_queries(2):
            p = browse.study_page(f)
        assert [s.pk for s in p.rows] == want[max(0, i - 10):i] and p.start == max(0, i - 10)
    # a cursor that is not the user's to see (another site's study) is not placed: the first page
    from dosereg.access.scope import SiteScope

    north = SiteScope(sites=frozenset({"north hospital"}), names=("north hospital",))
    at_north = _python_order(sort, Study.objects.select_related("device", "patient")
                             .filter(device__institution="north hospital"))
    other = Study.objects.exclude(device__institution="north hospital").exclude(device=None).first()
    f.after, f.before = other.pk, None
    p = browse.study_page(f, scope=north)
    assert [s.pk for s in p.rows] == at_north[:10] and p.start == 0 and p.count == len(at_north)
    f.after = at_north[3]
    p = browse.study_page(f, scope=north)
    assert [s.pk for s in p.rows] == at_north[4:14] and p.start == 4


def test_the_modality_list_is_every_modality_of_the_studies_and_no_blank(web_data):
    """The browser's modality choices (and the modality home pages' links): on PostgreSQL read by a loose index scan
    (one probe per modality) instead of a DISTINCT over every study; the same answer as the plain query, for every
    site and for one site."""
    from dosereg.access.scope import SiteScope, normalise
    from dosereg.registry.models import Device

    dev = Device.objects.create(display_name="bench room", institution="east wing", modality="XA")
    Study.objects.bulk_create([Study(study_instance_uid=f"2.25.7777{i}", device=dev, procedure_modality=m)
                               for i, m in enumerate(["XA", "", "MG", "XA", "NM"])])
    plain = sorted(set(Study.objects.exclude(procedure_modality="").values_list("procedure_modality", flat=True)))
    assert {"MG", "NM", "XA"} <= set(plain) and "" not in plain
    with CaptureQueriesContext(connection) as ctx:
        assert browse.modalities_in_scope() == plain
    assert len(ctx.captured_queries) == 1
    if connection.vendor == "postgresql":
        assert "WITH RECURSIVE" in ctx.captured_queries[0]["sql"]
    east = SiteScope(sites=frozenset({normalise("east wing")}), names=("east wing",))
    assert browse.modalities_in_scope(scope=east) == ["MG", "NM", "XA"]
