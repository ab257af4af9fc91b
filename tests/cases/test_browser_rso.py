"""The RSO's walk through a case in a real browser (Debian chromium via Playwright, never a downloaded browser):
a high-dose procedure arrives through the ingest service → the e-mail's link (log-in first) opens one case with
all its levels → acknowledge with a note (keyboard only) → follow-up with a date → close with an outcome → the
timeline shows it all. Screenshots of the worklist and the case page, desktop and 375 px phone, go to
test-artifacts/screenshots/cases-*.png."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from tests.web.data import PASSWORD, ensure_seed_data
from tests.web.test_browser import ARGS, CHROMIUM, SHOTS  # noqa: F401
from tests.web.test_browser import browser  # noqa: F401  (fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def arrived(live_server, tmp_path, settings):
    """A high-dose fluoroscopy procedure ingested through the registry's ingest service, with an RSO to tell."""
    from dicom_listener.spool import Spool
    from dosereg.pipeline.flow import file_import as dose_file_import
    from dosereg.web.services import user_create
    from tests.exposure.builders import rf_rdsr

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SITE_URL = live_server.url
    ensure_seed_data()
    user_create(username="walk-rso", password=PASSWORD, role="rso", email="walk-rso@hospital.test")
    user_create(username="walk-phys", password=PASSWORD, role="physicist")
    when = (timezone.now() - dt.timedelta(days=1)).replace(microsecond=0)
    dose_file_import(path=rf_rdsr(tmp_path, when=when, kar=7.4, kap=520, fluoro_s=3700, station="CATHLAB1",
                                  patient_id="WALK-1"), spool=Spool(tmp_path / "spool"))
    return live_server.url


def login(page, username):
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(150)
    page.screenshot(path=str(SHOTS / f"cases-{name}.png"), full_page=True)


def test_rso_walks_a_case_from_email_to_closed(arrived, browser):  # noqa: F811
    from playwright.sync_api import expect

    from dosereg.cases.models import Case
    from dosereg.exposure.models import Alert
    from dosereg.notifications.models import Notification

    base = arrived
    case = Case.objects.get()
    n_levels = Alert.objects.count()
    assert n_levels >= 7 and case.level_count == n_levels
    mail = Notification.objects.get(recipient="walk-rso@hospital.test")
    link = re.search(r"Open the case: (\S+)", mail.body).group(1)
    assert link == f"{base}/alerts/{case.pk}/"

    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    page = ctx.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(link)  # not signed in: the log-in page first, then the case
    assert "/login/" in page.url
    login(page, "walk-rso")
    assert page.url.rstrip("/").endswith(f"/alerts/{case.pk}")
    expect(page.locator("[data-levels] tbody tr")).to_have_count(n_levels)
    expect(page.locator("[data-case-severity]")).to_have_text("high")
    assert "7.4 Gy" in page.inner_text("[data-levels]") and "61:40 min:s" in page.inner_text("[data-levels]")
    shot(page, "case-desktop")

    # acknowledge with a note, by keyboard only
    page.focus("#acknowledge textarea[name=note]")
    page.keyboard.type("Operator informed; patient to be seen")
    page.keyboard.press("Tab")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    expect(page.locator("[data-case-status]")).to_have_text("Acknowledged")

    # follow-up with a date
    due = (timezone.localdate() + dt.timedelta(days=21)).isoformat()
    page.fill("#follow-up input[name=due]", due)
    page.fill("#follow-up textarea[name=note]", "Skin check at three weeks")
    with page.expect_navigation():
        page.click("#follow-up button[type=submit]")
    expect(page.locator("[data-case-status]")).to_have_text("Follow-up")
    expect(page.locator("[data-due]")).to_contain_text(due)

    # the worklist lists it with its due date; the due list too
    page.goto(base + "/alerts/")
    expect(page.locator(f"[data-case-row='{case.pk}']")).to_contain_text("due " + due)
    shot(page, "worklist-desktop")
    page.goto(base + "/alerts/due/")
    expect(page.locator("[data-due]")).to_contain_text(due)

    # close with an outcome
    page.goto(link)
    page.select_option("#close select[name=skin_reaction]", "observed")
    page.select_option("#close select[name=skin_grade]", "1")
    page.fill("#close textarea[name=note]", "Faint erythema, resolved")
    with page.expect_navigation():
        page.click("#close button[type=submit]")
    expect(page.locator("[data-case-status]")).to_have_text("Closed")
    timeline = page.inner_text("[data-timeline]")
    for text in ("Case opened", "E-mailed", "walk-rso@hospital.test", "Acknowledged by walk-rso",
                 "Operator informed; patient to be seen", "Follow-up scheduled by walk-rso", f"due {due}",
                 "Skin check at three weeks", "Closed by walk-rso", "Faint erythema, resolved", "Grade: 1"):
        assert text in timeline, text
    shot(page, "case-closed-desktop")

    # declared an incident; its PDF and the year's register (the PDF says Ka,r was the basis: no PSD recorded)
    page.select_option("#incident select[name=category]", "tissue_reaction")
    page.fill("#incident textarea[name=note]", "Faint erythema after 7.4 Gy Ka,r")
    with page.expect_navigation():
        page.click("#incident button[type=submit]")
    expect(page.locator("[data-incident-number]")).to_contain_text(f"{timezone.localdate().year}-0001")
    with page.expect_download() as dl:
        page.click("[data-incident-pdf]")
    assert dl.value.suggested_filename == f"dosereg-incident-{timezone.localdate().year}-0001.pdf"
    from pypdf import PdfReader

    text = " ".join(PdfReader(dl.value.path()).pages[0].extract_text().split())
    assert "Skin dose basis: Ka,r (reference air kerma; no PSD estimate recorded): 7.4 Gy" in text
    page.goto(base + f"/alerts/incidents/?year={timezone.localdate().year}")
    with page.expect_download() as dl:
        page.click("[data-incidents-pdf]")
    assert dl.value.suggested_filename == f"dosereg-incidents-{timezone.localdate().year}.pdf"
    shot(page, "incidents-desktop")

    # the dashboard: the top of the worklist, the worklist's count
    page.goto(base + "/dashboard/")
    expect(page.locator("[data-kpi=alerts]")).to_have_text(str(Case.objects.filter(status__in=["open", "acknowledged", "follow_up"]).count()))
    shot(page, "dashboard-desktop")
    assert errors == [], errors
    ctx.close()

    # a phone (375 px): the worklist and the case page fit, the actions are reachable
    phone = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True, has_touch=True)
    page = phone.new_page()
    page.goto(base + "/login/")
    login(page, "walk-rso")
    page.goto(base + "/alerts/?status=all")
    expect(page.locator(f"[data-case-row='{case.pk}']")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    shot(page, "worklist-phone")
    page.goto(link)
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    shot(page, "case-phone")
    phone.close()


def test_physicist_reads_the_case_but_has_no_actions(arrived, browser):  # noqa: F811
    from dosereg.cases.models import Case

    case = Case.objects.get()
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(arrived + f"/alerts/{case.pk}/")
    login(page, "walk-phys")
    assert page.locator("[data-levels]").is_visible()
    assert page.locator("#actions").count() == 0
    ctx.close()
