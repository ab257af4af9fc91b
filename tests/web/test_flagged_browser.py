"""Real browser (Debian's Chromium via Playwright): the RSO dashboard shows the count of studies with unreadable
dose values with their reason; its link opens the study browser filtered to them, each with a "check data"
badge. Screenshots: /tmp/hostile-dashboard-flagged.png, /tmp/hostile-studies-flagged.png."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.badinput import objects as O

from .test_browser import browser, login, page, site  # noqa: F401 (fixtures)
from .test_flagged_studies import _ingest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True),
              pytest.mark.filterwarnings("ignore::UserWarning")]


def test_flagged_studies_from_dashboard_to_filtered_list(site, page, tmp_path):
    base, data = site
    when = (timezone.now() - dt.timedelta(days=2)).replace(tzinfo=None, microsecond=0)
    nan = O.projection(patient_id="FLAG-BR-NAN", study_datetime=when, study_description="Cerebral angiography")
    O._set_numeric(nan, O.DAP, "NaN")
    flagged = _ingest(tmp_path, nan, 900)
    login(page, base, "t-rso")
    page.goto(base + "/dashboard/")
    kpi = page.locator("[data-kpi=flagged] .kpi-n")
    assert kpi.inner_text().strip() == "1"
    card = page.locator("[data-flagged-studies]")
    card.scroll_into_view_if_needed()
    assert "unreadable dose value: Dose Area Product" in card.inner_text()
    page.screenshot(path="/tmp/hostile-dashboard-flagged.png", full_page=False)
    page.click("[data-flagged-link]")
    page.wait_for_load_state()
    assert "flagged=dose" in page.url
    rows = page.locator("[data-study-row]")
    assert rows.count() == 1 and rows.first.get_attribute("data-study-row") == str(flagged.pk)
    assert rows.first.locator("[data-flagged]").inner_text() == "check data"
    assert page.locator("select[name=flagged]").input_value() == "dose"
    page.screenshot(path="/tmp/hostile-studies-flagged.png", full_page=False)
    assert page.console_errors == []
