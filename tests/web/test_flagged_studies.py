"""Studies whose dose values could not be read (flagged at ingest, issue #18) are counted on the RSO dashboard,
listed there with their reason, and the count links to the study browser filtered to them (``?flagged=dose``;
``?flagged=any``: every data-quality flag). Real ingest (NaN / text doses in the SR) on PostgreSQL."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import
from dosereg.rdsr import builder as B
from dosereg.registry.models import Study
from tests.badinput import objects as O

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::UserWarning")]


def _ingest(tmp_path, ds, n: int) -> Study:
    path = tmp_path / f"f{n}.dcm"
    path.write_bytes(B.to_bytes(ds))
    obj, _ = file_import(path=path, spool=Spool(tmp_path / "spool"))
    obj.refresh_from_db()
    return obj.study


@pytest.fixture
def flagged(tmp_path):
    when = (timezone.now() - dt.timedelta(days=3)).replace(tzinfo=None, microsecond=0)
    nan = O.projection(patient_id="FLAG-NAN", study_datetime=when, study_description="NaN dose")
    O._set_numeric(nan, O.DAP, "NaN")
    text = O.projection(patient_id="FLAG-TEXT", study_datetime=when, study_description="Text dose")
    O._set_numeric(text, O.DOSE_RP, "lots", index=1)
    bad_date = O.projection(patient_id="FLAG-DATE", study_datetime=when, study_description="Bad date")
    bad_date.StudyDate = "20251399"
    ok = O.projection(patient_id="FLAG-OK", study_datetime=when, study_description="Clean study")
    studies = {k: _ingest(tmp_path, ds, i) for i, (k, ds) in enumerate(
        [("nan", nan), ("text", text), ("date", bad_date), ("ok", ok)])}
    for s in studies.values():
        s.refresh_from_db()
    assert any("unreadable dose value" in f for f in studies["nan"].flags), studies["nan"].flags
    assert studies["date"].flags and not any("dose" in f for f in studies["date"].flags)
    assert studies["ok"].flags == []
    user = User.objects.create_user("rso-flags", password="x")
    user.groups.add(Group.objects.get_or_create(name="rso")[0])
    return studies, user


def _rows(html: str) -> set[int]:
    return {int(x) for x in re.findall(r'data-study-row="(\d+)"', html)}


def test_dashboard_counts_flagged_studies_with_reason_and_link(flagged, client):
    studies, user = flagged
    client.force_login(user)
    html = client.get(reverse("web:dashboard")).content.decode()
    kpi = re.search(r'data-kpi="flagged"><span class="kpi-n">(\d+)</span>', html)
    assert kpi and int(kpi.group(1)) == 2, html[:3000]
    card = html[html.index("data-flagged-studies"):html.index('id="quarantine"')]
    assert {int(x) for x in re.findall(r'data-flagged-row="(\d+)"', card)} == {studies["nan"].pk, studies["text"].pk}
    assert "unreadable dose value: Dose Area Product &#x27;NaN&#x27;" in card or "unreadable dose value: Dose Area Product" in card
    assert f'{reverse("web:study_browser")}?flagged=dose' in card
    assert "3 studies carry a data-quality flag" in card  # (1: "1 study carries")
    # the linked list: exactly the studies with unreadable doses; "any" adds the invalid date
    page = client.get(reverse("web:study_browser") + "?flagged=dose").content.decode()
    assert _rows(page) == {studies["nan"].pk, studies["text"].pk}
    assert page.count("data-flagged ") + page.count("data-flagged>") >= 2 or "check data" in page
    page = client.get(reverse("web:study_browser") + "?flagged=any").content.decode()
    assert _rows(page) == {studies["nan"].pk, studies["text"].pk, studies["date"].pk}
    page = client.get(reverse("web:study_browser")).content.decode()
    assert studies["ok"].pk in _rows(page) and len(_rows(page)) == 4
    # an unknown value is ignored with a notice, not a 500
    r = client.get(reverse("web:study_browser") + "?flagged=%00x")
    assert r.status_code == 200 and len(_rows(r.content.decode())) == 4


def test_flagged_count_and_export_use_bounded_queries(flagged, client):
    studies, user = flagged
    client.force_login(user)
    from dosereg.web.selectors import flagged_studies

    with CaptureQueriesContext(connection) as q:
        res = flagged_studies()
    assert len(q.captured_queries) == 1
    assert res["dose_count"] == 2 and res["any_count"] == 3
    r = client.get(reverse("web:study_browser_export", kwargs={"fmt": "csv"}) + "?flagged=dose")
    assert r.status_code == 200
    body = b"".join(r.streaming_content).decode() if r.streaming else r.content.decode()
    assert "NaN dose" in body and "Text dose" in body and "Clean study" not in body and "Bad date" not in body


@pytest.mark.django_db
def test_the_flagged_list_reads_the_flagged_studies_index_not_every_study():
    """The dashboard's data-quality list counts and lists the flagged studies through a partial index of them
    (registry 0018), so its cost follows the flagged studies, not the registry (a scan of 100k studies: 38-52 ms)."""
    from dosereg.web import browse
    from tests.conftest import require

    require(connection.vendor == "postgresql", "PostgreSQL (DATABASE_URL): the plan is PostgreSQL's")
    Study.objects.bulk_create([Study(study_instance_uid=f"2.25.5151{i}", flags=["x"] if i % 500 == 0 else [])
                               for i in range(5000)])
    with connection.cursor() as cur:
        cur.execute("ANALYZE registry_study")
    qs = browse.flagged_studies(Study.objects.all(), "any").order_by("-study_datetime")
    assert qs.count() == 10
    plan = qs.explain()
    assert "study_flagged_recent" in plan and "Seq Scan on registry_study" not in plan, plan
