"""Real browser: Debian's Chromium driven by Playwright (never a downloaded browser).

Logs in as each role, reaches what the role should and gets 403/404 for what
it should not; the portal shows a patient only their own exams; an alert is
acknowledged from the dashboard without a reload; exports download.
Screenshots of each main page go to test-artifacts/screenshots/.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import REPO, require

from .data import PASSWORD, build_registry, ensure_seed_data, make_users

# serialized rollback: the flush after each live-server test must not wipe the migrations' seed data
# (role groups, exposure rules, DRL sets) for the tests that follow
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
SHOTS = REPO / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def browser():
    require(os.path.exists(CHROMIUM), f"Debian chromium ({CHROMIUM})")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover
        require(False, "the playwright python package")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the ORM is used from the test thread next to Playwright's loop
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def site(live_server, tmp_path, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ensure_seed_data()
    data = make_users(build_registry(tmp_path))
    return live_server.url, data


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    pg.console_errors = []
    # script errors and CSP violations; the 403/404 pages we ask for on purpose are not errors
    pg.on("console", lambda m: pg.console_errors.append(m.text)
          if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    yield pg
    ctx.close()


def login(page, base, username):
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


def shot(page, name):
    page.wait_for_timeout(250)  # charts finish drawing
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def status(page, url) -> int:
    return page.goto(url).status


def test_each_role_reaches_its_pages_and_nothing_else(site, page):
    base, d = site
    pa, sa = d.patients["a"], d.studies["a_angio"]
    pages = {
        "dashboard": "/dashboard/", "patients": "/patients/", "history": f"/patients/{pa.pk}/", "study": f"/studies/{sa.pk}/",
        "protocols": "/protocols/", "protocol-overview": "/protocols/overview/", "names": "/protocols/names/", "drls": "/protocols/drls/", "technique": "/protocols/technique/",
        "portal": "/portal/", "portal_exam": f"/portal/exams/{sa.pk}/", "staff_me": "/staff/me/", "staff": "/staff/", "audit": "/audit/",
    }
    clinical = {"dashboard", "patients", "history", "study", "protocols", "protocol-overview", "names", "drls", "technique"}
    allowed = {
        "rso": clinical | {"staff"},
        "physicist": clinical,
        "admin": clinical | {"staff", "audit"},
        "staff": {"staff_me"},
        "patient": {"portal", "portal_exam"},
        "patient2": {"portal"},
    }
    for role, ok in allowed.items():
        login(page, base, f"t-{role}")
        for name, path in pages.items():
            code = status(page, base + path)
            if name in ok:
                assert code == 200, (role, path, code)
                if role in ("rso", "physicist", "patient", "staff", "admin") and name in {
                    "rso": {"dashboard", "history", "study", "patients"}, "physicist": {"protocols", "names", "drls", "technique"},
                    "patient": {"portal", "portal_exam"}, "staff": {"staff_me"}, "admin": {"audit", "staff"}}[role]:
                    shot(page, f"{role}-{name}")
            else:
                expected = 404 if (role == "patient2" and name == "portal_exam") else 403
                assert code == expected, (role, path, code)
        page.goto(base + "/")
        page.click("text=Sign out")
        page.wait_for_url(re.compile(r".*/login/.*"))
    assert page.console_errors == [], page.console_errors  # no CSP violations or script errors


def test_anonymous_is_sent_to_login(site, page):
    base, d = site
    page.goto(base + f"/patients/{d.patients['a'].pk}/")
    assert "/login/" in page.url
    shot(page, "anonymous-login")


def test_patient_portal_shows_only_own_exams(site, page):
    base, d = site
    login(page, base, "t-patient2")
    assert page.url.endswith("/portal/")
    cards = page.locator("article.exam-card h2").all_inner_texts()
    own = {s.study_description for s in d.studies.values() if s.patient_id == d.patients["b"].pk}
    assert set(cards) == own
    assert page.get_by_text("not the dose to your organs").is_visible()
    page.locator("details summary").first.click()
    assert page.get_by_text("What it does not mean").first.is_visible()
    shot(page, "patient2-portal")
    assert status(page, base + f"/portal/exams/{d.studies['a_angio'].pk}/") == 404
    assert status(page, base + f"/api/v1/studies/{d.studies['a_angio'].pk}/") == 404
    with page.expect_download() as dl:
        page.goto(base + "/portal/")
        page.click("[data-download=csv]")
    text = Path(dl.value.path()).read_text(encoding="utf-8-sig")
    assert "Hip fracture fixation" in text and "Coronary" not in text


def test_patient_downloads_own_pdf(site, page):
    from pypdf import PdfReader

    base, d = site
    login(page, base, "t-patient2")
    page.goto(base + "/portal/")
    with page.expect_download() as dl:
        page.click("[data-download=pdf]")
    assert dl.value.suggested_filename == "my-imaging-exams.pdf"
    path = Path(dl.value.path())
    assert path.read_bytes()[:5] == b"%PDF-"
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(str(path)).pages).split())
    own = {s.study_description for s in d.studies.values() if s.patient_id == d.patients["b"].pk}
    assert own and all(desc in text for desc in own)
    assert "Coronary angiography" not in text and "Gy·cm²" in text and "not the dose to your organs" in text
    assert page.console_errors == [], page.console_errors


def test_site_scoped_rso_sees_only_own_site_on_dashboard(site, page, tmp_path):
    from playwright.sync_api import expect

    from .site_data import SITE_A, build_two_sites, find_alerts, make_site_users

    base, _ = site
    s = make_site_users(find_alerts(build_two_sites(tmp_path)))
    # the dashboard lists the top of the RSO's worklist: the cases these pregnancy alerts joined
    a_row, b_rows = s.alerts["sa_rf"].case_link.case_id, (s.alerts["sb_rf"].case_link.case_id, s.alerts["ab_b"].case_link.case_id)
    login(page, base, "t-rso-a")
    page.goto(base + "/dashboard/")
    expect(page.locator("[data-scope]")).to_contain_text(SITE_A.upper())
    expect(page.locator(f"[data-case-row='{a_row}']")).to_be_visible()
    for pk in b_rows:
        assert page.locator(f"[data-case-row='{pk}']").count() == 0, pk
    body = page.inner_text("body")
    assert "PSA0001" in body and "PSB0001" not in body and "Site B barium swallow" not in body
    shot(page, "rso-site-a-dashboard")
    # another site's patient, study and alert action: 404 as for a missing one
    assert status(page, base + f"/patients/{s.patients['sb'].pk}/") == 404
    assert status(page, base + f"/studies/{s.studies['sb_rf'].pk}/") == 404
    assert status(page, base + f"/api/v1/studies/{s.studies['sb_rf'].pk}/") == 404
    assert status(page, base + f"/patients/{s.patients['ab'].pk}/") == 200
    expect(page.locator("[data-other-sites]")).to_be_visible()
    assert "Both-sites swallow at B" not in page.inner_text("body")
    # the unscoped RSO sees site B's alerts on the same dashboard
    page.goto(base + "/")
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/login/.*"))
    login(page, base, "t-rso")
    page.goto(base + "/dashboard/")
    for pk in (a_row, *b_rows):
        expect(page.locator(f"[data-case-row='{pk}']")).to_be_visible()
    assert page.console_errors == [], page.console_errors


def test_dashboard_trend_switch_redraws_in_place(site, page):
    base, d = site
    login(page, base, "t-rso")
    page.goto(base + "/dashboard/")
    shot(page, "rso-dashboard")
    # the trend switch redraws the chart in place
    page.click("[data-trend-switch] [data-q=kap]")
    assert page.locator("[data-trend-switch] [data-q=kap]").get_attribute("class").endswith("active")
    assert page.console_errors == [], page.console_errors


def test_download_protocol_exports(site, page):
    base, d = site
    login(page, base, "t-physicist")
    page.goto(base + "/protocols/")
    with page.expect_download() as dl:
        page.click("[data-download=studies-csv]")
    assert dl.value.suggested_filename.endswith(".csv")
    text = Path(dl.value.path()).read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("study_datetime,device,modality")
    assert len(text.splitlines()) == 1 + sum(1 for s in d.studies.values() if s.has_ionising_dose)
    with page.expect_download() as dl:
        page.click("[data-download=studies-xlsx]")
    assert Path(dl.value.path()).read_bytes()[:2] == b"PK"
    # a box plot opens its group's page: histograms with axis titles and the reference level
    page.locator("a[data-group-link]").first.click()
    page.wait_for_selector("[data-group-quantity]")
    shot(page, "physicist-histogram")
    assert page.console_errors == [], page.console_errors
