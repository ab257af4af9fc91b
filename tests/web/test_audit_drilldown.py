"""Protocol audit drill-down, grouping, outliers and the confirmed, audited mapping (issue 17 item 2), on the
real database: every audit row and every quantity cell opens, through the study browser's own filters, exactly
the studies whose count and median it shows (read from the summaries or exactly)."""
from __future__ import annotations

import statistics
from datetime import datetime, time, timedelta

import pytest
from django.http import QueryDict
from django.urls import reverse
from django.utils import timezone

from dosereg.audit.models import AuditEvent
from dosereg.protocols import services as PS
from dosereg.protocols.drl_seeds import DX_ADULT, PAED_CT, UNVERIFIED
from dosereg.protocols.histogram import MAX_RELATIVE_ERROR, exact_quantiles
from dosereg.protocols.models import DRLSet, DRLValue, ProtocolMapping, StandardName
from dosereg.registry.models import Study
from dosereg.web import audit_pages, browse, selectors, services

from .test_protocol_summaries import _studies

TOL = MAX_RELATIVE_ERROR + 1e-12


def _local_days(days_back: int, days_forward: int = 0) -> tuple[datetime, datetime]:
    tz = timezone.get_current_timezone()
    today = timezone.localdate()
    return (datetime.combine(today - timedelta(days=days_back), time.min, tzinfo=tz),
            datetime.combine(today + timedelta(days=days_forward + 1), time.min, tzinfo=tz))


def _browse(query: str):
    return browse.filtered_studies(browse.read_filters(QueryDict(query), strict=True))


@pytest.mark.parametrize("summarised", [False, True])
def test_every_cell_opens_exactly_its_studies(web_data, summarised):
    _studies(400, seed=11)
    Study.objects.filter(pk__in=Study.objects.order_by("pk").values("pk")[:15]).update(not_patient_reason="QA")
    chest = StandardName.objects.get(modality="CT", name="Chest (lung cancer)")
    services.protocol_mapping_set(modality="CT", source_name="CT Chest", standard_name=chest)
    if summarised:
        PS.summaries_rebuild_all()
    for since, until in (_local_days(365), _local_days(100, 0), _local_days(300, -40)):
        audit = selectors.protocol_audit(since=since, until=until)
        assert audit["rows"]
        descriptions_unmapped = {(r["device_id"], r["description"]) for r in audit["rows"] if r["standard_name"] is None}
        # an unmapped name is its own row per device: "CT Head" and "CT CHEST W/O" never share a median
        assert len({d for _, d in descriptions_unmapped}) >= 3
        assert not any(r["description"] for r in audit["rows"] if r["standard_name"] is not None)
        for r in audit["rows"]:
            ids = list(_browse(r["query"]).values_list("pk", flat=True))
            assert len(ids) == r["n"], (r["device"], r["standard_name"], r["description"])
            for q in r["quantities"]:
                vals = [v for v in _browse(q["query"]).values_list(q["key"], flat=True)]
                assert len(vals) == q["n"] and None not in vals
                assert (min(vals), max(vals)) == (q["min"], q["max"])
                med = exact_quantiles(vals, (0.5,))[0]
                assert q["median"] == med or abs(q["median"] / med - 1) <= TOL
        # the period's whole days, as the browser reads them
        first, last = audit_pages.period_days(since, until)
        assert first == since.date().isoformat() and last == (until - timedelta(days=1)).date().isoformat()


def test_no_device_rows_drill_down_too(web_data):
    _studies(300, seed=5)
    since, until = _local_days(365)
    rows = [r for r in selectors.protocol_audit(since=since, until=until)["rows"] if r["device_id"] is None]
    assert rows  # 2 % of the generated studies have no device
    for r in rows:
        assert "device=0" in r["query"]
        assert _browse(r["query"]).count() == r["n"]


def test_group_page_outliers_and_histogram(web_data, client, settings):
    settings.AUDIT_OUTLIER_Q3_FACTOR = 1.5
    _studies(400, seed=3)
    chest = StandardName.objects.get(modality="CT", name="Chest (lung cancer)")
    services.protocol_mapping_set(modality="CT", source_name="CT Chest", standard_name=chest)
    since, until = _local_days(365)
    row = max((r for r in selectors.protocol_audit(since=since, until=until)["rows"] if r["standard_name"] == chest),
              key=lambda r: r["n"])
    detail = audit_pages.group_detail(QueryDict(row["query"]))
    assert detail["n"] == row["n"]
    dlp = next(q for q in detail["quantities"] if q["field"] == "dlp_total_mgy_cm")
    vals = list(_browse(dlp["query"]).values_list("dlp_total_mgy_cm", flat=True))
    q3 = statistics.quantiles(vals, n=4, method="inclusive")[2]
    drl = DRLValue.objects.get(standard_name=chest, quantity="dlp_total_mgy_cm", drl_set__active=True).value
    expected = {v for v in vals if v > drl or v > q3 * 1.5}
    assert dlp["n_outliers"] == len([v for v in vals if v in expected])
    assert {o["value"] for o in dlp["outliers"]} <= expected
    assert [o["value"] for o in dlp["outliers"]] == sorted((o["value"] for o in dlp["outliers"]), reverse=True)
    assert dlp["hist"]["drls"] and dlp["hist"]["drls"][0]["value"] == drl
    # every bar opens exactly its studies, and the bars cover the group
    total = 0
    for bar in dlp["hist"]["bars"]:
        got = list(_browse(bar["query"]).values_list("dlp_total_mgy_cm", flat=True))
        assert len(got) == bar["n"] and min(got) == bar["lo"] and max(got) == bar["hi"]
        total += bar["n"]
    assert total == dlp["n"]
    client.force_login(web_data.users["physicist"])
    html = client.get(reverse("web:protocol_group") + "?" + row["query"]).content.decode()
    assert 'data-axis-title="x">DLP per study (mGy·cm)' in html and "data-drl-line" in html and "data-outliers" in html
    assert client.get(reverse("web:protocol_group") + "?device=abc").status_code == 400


def test_mapping_needs_confirmation_is_audited_and_bulk(web_data, client):
    client.force_login(web_data.users["physicist"])
    chest = StandardName.objects.get(modality="CT", name="Chest (lung cancer)")
    url = reverse("web:protocol_names")
    before = AuditEvent.objects.count()
    # step 1 writes nothing and shows the names, their studies and the target
    r = client.post(url, {"name": ["CT:CT Chest", "CT:CT CHEST W/O"], "standard_name": chest.pk})
    html = r.content.decode()
    assert r.status_code == 200 and "data-confirm-mapping" in html and "Chest (lung cancer)" in html
    assert not ProtocolMapping.objects.exists()
    assert AuditEvent.objects.filter(pk__gt=before, object_type="protocol_mapping").count() == 0
    # step 2: both mapped in one go, one audit row per name with the previous and new name
    r = client.post(url, {"name": ["CT:CT Chest", "CT:CT CHEST W/O"], "standard_name": chest.pk, "confirm": "yes"})
    assert r.status_code == 302
    assert set(ProtocolMapping.objects.values_list("source_name", flat=True)) == {"CT Chest", "CT CHEST W/O"}
    rows = AuditEvent.objects.filter(pk__gt=before, object_type="protocol_mapping").order_by("object_id")
    assert [(e.object_id, e.detail["previous"], e.detail["new"], e.action) for e in rows] == [
        ("CT:CT CHEST W/O", None, "Chest (lung cancer)", "change"), ("CT:CT Chest", None, "Chest (lung cancer)", "change")]
    assert all(e.username == web_data.users["physicist"].username for e in rows)
    # a cross-anatomy choice is flagged before it is confirmed
    ctpa = StandardName.objects.get(modality="CT", name="CT pulmonary angiogram (CTPA)")
    html = client.post(url, {"name": "CT:Coronary CTA", "standard_name": ctpa.pk}).content.decode()
    assert "body region differs" in html and "data-warning" in html
    # unmapping is confirmed too
    client.post(url, {"name": "CT:CT Chest", "unmap": "1"})
    assert ProtocolMapping.objects.filter(source_name="CT Chest").exists()
    client.post(url, {"name": "CT:CT Chest", "unmap": "1", "confirm": "yes"})
    assert not ProtocolMapping.objects.filter(source_name="CT Chest").exists()
    # nothing chosen: 400, nothing written
    assert client.post(url, {"name": "CT:CT Head", "confirm": "yes"}).status_code == 400
    assert client.post(url, {"standard_name": chest.pk, "confirm": "yes"}).status_code == 400
    # an RSO reads but does not map
    client.force_login(web_data.users["rso"])
    assert client.post(url, {"name": "CT:CT Head", "standard_name": chest.pk, "confirm": "yes"}).status_code == 403


def test_names_page_shows_confidence_and_never_a_cross_anatomy_suggestion(web_data, client):
    Study.objects.filter(pk=web_data.studies["c_ct2"].pk).update(study_description="Coronary CTA")
    client.force_login(web_data.users["physicist"])
    ctx = selectors.name_mappings(since=timezone.now() - timedelta(days=730))
    by_name = {n["source_name"]: n for n in ctx["names"]}
    assert by_name["Coronary CTA"]["suggestion"] is None
    assert by_name["CT Chest"]["suggestion"].name == "Chest (lung cancer)" and 35 <= by_name["CT Chest"]["confidence"] <= 100
    html = client.get(reverse("web:protocol_names")).content.decode()
    assert "% confidence" in html and "data-review-suggestion" in html


def test_dx_and_paediatric_sets_are_seeded_inactive_with_citations(web_data):
    for spec in (DX_ADULT, PAED_CT):
        s = DRLSet.objects.get(name=spec["name"])
        assert not s.active and s.citation and s.url.startswith("https://")
        values = DRLValue.objects.filter(drl_set=s)
        assert values.count() == len(spec["rows"]) and all(v.notes == UNVERIFIED for v in values)
    # an inactive set is never compared with a median
    _studies(50, seed=2)
    pa = StandardName.objects.get(modality="DX", name="Chest PA")
    services.protocol_mapping_set(modality="DX", source_name="Chest PA", standard_name=pa)
    since, until = _local_days(365)
    for r in selectors.protocol_audit(since=since, until=until)["rows"]:
        if r["standard_name"] == pa:
            assert all(not q["drls"] for q in r["quantities"])


def test_bulk_suggestions_are_reviewed_then_applied(web_data, client):
    client.force_login(web_data.users["physicist"])
    url = reverse("web:protocol_names")
    names = ["CT:CT Chest", "DX:Chest PA", "RF:Barium swallow", "CT:Coronary CTA"]
    r = client.post(url, {"name": names, "use_suggestions": "1"})
    html = r.content.decode()
    assert r.status_code == 200 and "data-confirm-suggestions" in html
    assert html.count("data-suggestion-row") == 4 and html.count('name="assign"') == 2  # chest CT, chest PA
    assert "CT pulmonary angiogram" not in html and not ProtocolMapping.objects.exists()
    assigns = [v for v in __import__("re").findall(r'name="assign" value="([^"]+)"', html)]
    before = AuditEvent.objects.count()
    r = client.post(url, {"assign": [a.replace("&#x27;", "'") for a in assigns], "confirm": "yes"})
    assert r.status_code == 302
    got = {(m.modality, m.source_name): m.standard_name.name for m in ProtocolMapping.objects.select_related("standard_name")}
    assert got == {("CT", "CT Chest"): "Chest (lung cancer)", ("DX", "Chest PA"): "Chest PA"}
    assert AuditEvent.objects.filter(pk__gt=before, object_type="protocol_mapping").count() == 2
    assert client.post(url, {"assign": "x:CT:CT Head", "confirm": "yes"}).status_code == 400


def test_summary_export_names_the_unmapped_description(web_data, client):
    import csv
    import io

    client.force_login(web_data.users["physicist"])
    r = client.get(reverse("web:protocol_export", kwargs={"kind": "summary", "fmt": "csv"}) + "?modality=CT")
    rows = list(csv.DictReader(io.StringIO(b"".join(r.streaming_content).decode() if hasattr(r, "streaming_content")
                                           else r.content.decode())))
    assert {row["study_description_unmapped"] for row in rows if row["standard_name"] == "(unmapped)"} == {
        "CT Chest", "CT CHEST W/O"}


def test_the_audit_table_is_paged_and_every_row_is_on_exactly_one_page(web_data, login, monkeypatch):
    """Hundreds of rows (every device's names, unmapped ones per description) are shown a page at a time; the
    overview (its own page) and the exports keep every row; a page past the end shows the last."""
    from dosereg.web import views_audit

    _studies(300, seed=7)
    since, until = _local_days(365)
    every = selectors.protocol_audit(since=since, until=until)["rows"]
    assert len(every) >= 5
    monkeypatch.setattr(views_audit, "AUDIT_PAGE_ROWS", 2)
    c = login(web_data.users["physicist"])
    seen, pages = [], -(-len(every) // 2)
    for page in range(1, pages + 1):
        resp = c.get(reverse("web:protocol_audit") + f"?page={page}")
        assert resp.status_code == 200
        rows = resp.context["rows"]
        assert len(rows) == (2 if page < pages else len(every) - 2 * (pages - 1))
        seen += [r["query"] for r in rows]
        html = resp.content.decode()
        assert f"Rows {2 * page - 1}–{min(2 * page, len(every))} of {len(every)}" in html
        assert ("data-audit-next" in html) == (page < pages)
        assert "page=" not in resp.context["query"]  # the exports' query: every row, whatever the page
        assert resp.context["n_charts"] == len(c.get(reverse("web:protocol_overview")).context["overview"])
    assert seen == [r["query"] for r in every]
    assert c.get(reverse("web:protocol_audit") + "?page=999").context["pager"].page == pages
