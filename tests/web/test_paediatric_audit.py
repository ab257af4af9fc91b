"""Protocol audit of a paediatric age-band family (issue 17): one "Paed head" protocol used for children of every
age is audited per RP 185 age band, each band against its own DRL, with an "age unknown" row compared with none;
every band row drills down to exactly its studies, whether the audit reads the studies exactly, from summaries
rebuilt at once (``summaries_rebuild_all``) or refreshed incrementally (``summaries_refresh``). An adult name is
never split by age."""
from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dosereg.protocols import age_bands
from dosereg.protocols import services as PS
from dosereg.protocols.drl_seeds import PAED_CT
from dosereg.protocols.models import DRLSet, ProtocolSummary, StandardName, SummaryBucket
from dosereg.protocols.selectors import audit_groups, group_histogram
from dosereg.registry.models import Device, Study
from dosereg.web import audit_pages, browse, selectors, services

HEAD = age_bands.PAED_HEAD_CT
# (age in years, DLP mGy·cm): newborns, infants (one exactly 3 months), children (one exactly 1 year, one exactly 6)
PAED = [(0.05, 180.0), (0.1, 220.0), (0.2, 260.0),
        (0.25, 330.0), (0.5, 350.0),
        (1.0, 400.0), (3.0, 450.0), (5.5, 520.0),
        (6.0, 600.0), (9.0, 700.0)]
UNKNOWN_AGE = [(None, 800.0), (-1.0, 900.0)]
EXPECTED_BANDS = {"0-3m": 3, "3m-1y": 2, "1-6y": 3, "6y+": 2, age_bands.UNKNOWN: 2}
DLP_DRL = {r["name"]: r["value"] for r in PAED_CT["rows"] if r["quantity"] == "dlp_total_mgy_cm"}


def _period():
    tz = timezone.get_current_timezone()
    today = timezone.localdate()
    return (datetime.combine(today - timedelta(days=60), time.min, tzinfo=tz),
            datetime.combine(today + timedelta(days=1), time.min, tzinfo=tz))


def _make(*, mapped_to: str) -> dict[str, set[int]]:
    """The studies of one CT room: "Paed head" at the ages above, "CT Head" (adult name) at the same ages;
    returns {band key: study ids} of the paediatric protocol and {"adult": ids}."""
    dev = Device.objects.create(display_name="Paeds CT", modality="CT")
    now = timezone.now()
    out: dict[str, set[int]] = {}
    for i, (age, dlp) in enumerate(PAED + UNKNOWN_AGE):
        for descr in ("Paed head", "CT Head"):
            s = Study.objects.create(
                study_instance_uid=f"2.25.4242{i}{len(descr)}", device=dev, procedure_modality="CT",
                study_description=descr, study_datetime=now - timedelta(days=2 + i), event_count=1,
                has_ionising_dose=True, patient_age_years=age, dlp_total_mgy_cm=dlp, ctdivol_max_mgy=dlp / 12)
            band = HEAD.band_of(age)
            key = "adult" if descr == "CT Head" else (band.key if band else age_bands.UNKNOWN)
            out.setdefault(key, set()).add(s.pk)
    DRLSet.objects.filter(name=PAED_CT["name"]).update(active=True)
    services.protocol_mapping_set(modality="CT", source_name="Paed head",
                                  standard_name=StandardName.objects.get(modality="CT", name=mapped_to))
    adult = StandardName.objects.get_or_create(modality="CT", name="Head (adult)")[0]
    services.protocol_mapping_set(modality="CT", source_name="CT Head", standard_name=adult)
    return out


def _browse(query: str) -> set[int]:
    return set(browse.filtered_studies(browse.read_filters(QueryDict(query), strict=True)).values_list("pk", flat=True))


@pytest.mark.django_db
@pytest.mark.parametrize("mapped_to, read", [
    ("Paediatric head", "exact"),
    ("Paediatric head", "rebuild_all"),
    ("Paediatric head", "refresh"),
    ("Paediatric head, 1 to 6 years", "exact"),      # mapped to one band's name: still split by age
    ("Paediatric head, 0 to 3 months", "refresh"),
])
def test_paed_head_is_split_by_age_band_each_against_its_drl(mapped_to, read):
    ids = _make(mapped_to=mapped_to)
    if read == "rebuild_all":
        PS.summaries_rebuild_all()
    elif read == "refresh":
        PS.summaries_refresh()
    if read != "exact":  # the audit reads the stored summaries: clean buckets, rows per age class
        assert not SummaryBucket.objects.filter(dirty=True).exists()
        classes = set(ProtocolSummary.objects.filter(study_description="Paed head").values_list("age_class", flat=True))
        assert classes == {age_bands.age_class(a) for a, _ in PAED + UNKNOWN_AGE}
    since, until = _period()
    audit = selectors.protocol_audit(since=since, until=until)
    fam_rows = [r for r in audit["rows"] if r["family"] == HEAD.name]
    assert {r["age_band"]: r["n"] for r in fam_rows} == EXPECTED_BANDS
    assert [r["age_band"] for r in fam_rows] == ["0-3m", "3m-1y", "1-6y", "6y+", age_bands.UNKNOWN]  # youngest first
    for r in fam_rows:
        dlp = next(q for q in r["quantities"] if q["key"] == "dlp_total_mgy_cm")
        band = HEAD.band(r["age_band"])
        want = [v for a, v in PAED + UNKNOWN_AGE if (HEAD.band_of(a) == band)]
        assert dlp["n"] == len(want) and (dlp["min"], dlp["max"]) == (min(want), max(want))
        if band is None:  # age unknown: never compared with any band's DRL
            assert r["age_unknown"] and dlp["drls"] == []
        else:
            assert [c["drl"].value for c in dlp["drls"]] == [DLP_DRL[HEAD.band_name(band)]]
            assert r["standard_name"].name == HEAD.band_name(band)
            assert dlp["drls"][0]["above"] == (dlp["median"] > DLP_DRL[HEAD.band_name(band)])
        # the drill-down of the row and of its quantity: exactly this band's studies
        assert _browse(r["query"]) == ids[r["age_band"]]
        assert _browse(dlp["query"]) == ids[r["age_band"]]
        # the group page of the row: the same studies and the band's DRLs only
        detail = audit_pages.group_detail(QueryDict(r["query"]))
        assert detail["n"] == len(ids[r["age_band"]])
        dq = next(q for q in detail["quantities"] if q["field"] == "dlp_total_mgy_cm")
        assert [d.value for d in dq["drls"]] == ([DLP_DRL[HEAD.band_name(band)]] if band else [])
        # the summaries' histogram of the band row
        h = group_histogram(since=since, until=until, quantity="dlp_total_mgy_cm", device_id=r["device_id"],
                            standard_name_id=None, family=r["family"], age_band=r["age_band"])
        assert h["n"] == len(want)
    # the adult name is one row, whatever the ages, and not compared with a paediatric band's DRL
    adult = [r for r in audit["rows"] if r["standard_name"] is not None and r["standard_name"].name == "Head (adult)"]
    assert len(adult) == 1 and adult[0]["family"] == "" and adult[0]["age_band"] == ""
    assert adult[0]["n"] == len(PAED + UNKNOWN_AGE) and _browse(adult[0]["query"]) == ids["adult"]
    keys = [k for k in audit_groups(since=since, until=until) if k.modality == "CT" and not k.family]
    assert len(keys) == 1 and keys[0].age_band == ""


@pytest.mark.django_db
def test_a_study_whose_age_changes_moves_band_after_incremental_refresh():
    ids = _make(mapped_to="Paediatric head")
    PS.summaries_refresh()
    since, until = _period()
    moved = min(ids["0-3m"])
    Study.objects.filter(pk=moved).update(patient_age_years=2.0)  # e.g. a corrected age on re-ingest
    PS.studies_mark_dirty([moved])  # the pipeline's protocols step
    for _ in range(2):  # dirty: read exactly; then rebuilt by the periodic job: the same rows
        rows = {r["age_band"]: r for r in selectors.protocol_audit(since=since, until=until)["rows"] if r["family"]}
        assert rows["0-3m"]["n"] == 2 and rows["1-6y"]["n"] == 4
        assert _browse(rows["1-6y"]["query"]) == ids["1-6y"] | {moved}
        PS.summaries_refresh()
    assert not SummaryBucket.objects.filter(dirty=True).exists()


@pytest.mark.django_db
def test_band_rows_on_the_page_and_bounded_queries(client):
    from dosereg.web.services import user_create

    _make(mapped_to="Paediatric head")
    PS.summaries_refresh()
    client.force_login(user_create(username="t-phys", password="pw-Long-enough-123", role="physicist"))
    since, until = _period()
    with CaptureQueriesContext(connection) as ctx:
        selectors.protocol_audit(since=since, until=until)
    assert len(ctx.captured_queries) <= 5
    page = client.get(reverse("web:protocol_audit"), {"since": since.date().isoformat(), "modality": "CT"})
    html = page.content.decode()
    assert page.status_code == 200
    for b in HEAD.bands:
        assert f'data-age-band="{b.key}"' in html and b.label in html
    assert f'data-age-band="{age_bands.UNKNOWN}"' in html and "data-age-unknown" in html
    summary = client.get(reverse("web:protocol_export", args=["summary", "csv"]),
                         {"since": since.date().isoformat(), "modality": "CT"})
    text = b"".join(summary.streaming_content).decode() if summary.streaming else summary.content.decode()
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    shown = {(r["standard_name"], r["age_band"], r["procedures"]) for r in rows if r["quantity"] == "DLP"}
    assert shown >= {("Paediatric head, 0 to 3 months", "0 to 3 months", "3"), ("Paediatric head, 1 to 6 years", "1 to 6 years", "3"),
                     ("Paediatric head, age unknown", "age unknown", "2")}
    assert not any(r["drl_value"] for r in rows if r["age_band"] == "age unknown")
