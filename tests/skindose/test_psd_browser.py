"""An RSO opens a high-dose fluoroscopy study in Chromium (Debian's, via Playwright) and sees the peak skin dose, the
skin-dose map and the RSO case the PSD rule raised, all through the real pipeline: the ingest queues the skin task,
which stores the PSD and re-evaluates the rules (no call made by the test). Then the patient history with the PSD per
procedure and the summed map, and the patient's portal page with the skin-reaction text. Screenshots:
test-artifacts/screenshots/skin-psd-*.png."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.conftest import require
from tests.web.data import PASSWORD, ensure_seed_data
from tests.web.test_browser import ARGS, CHROMIUM, SHOTS
from tests.browser_wait import wait_js

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _import(tmp_path, *, when, n, patient_id="PSD-WALK"):
    from dicom_listener.spool import Spool
    from dosereg.pipeline.flow import file_import
    from dosereg.rdsr import builder as b

    from .test_skin_pages import _geometry_event

    spec = b.ProjectionRDSRSpec(study_datetime=when, manufacturer="Siemens", model="AXIOM-Artis", patient_id=patient_id,
                                patient_name="Walk^Skin", birth_date=dt.date(1958, 2, 2), modality="XA",
                                institution="Northfield General Hospital", study_description="Hepatic embolisation",
                                events=[_geometry_event() for _ in range(n)])
    path = b.write(b.build_projection_rdsr(spec), tmp_path / f"{patient_id}-{when:%Y%m%d}.dcm")
    obj, _ = file_import(path=path, spool=Spool(tmp_path / "spool"))  # ingest → follow-up → skin task (eager)
    return obj.study


def login(page, base, username):
    page.goto(base + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.click("button[type=submit]")


@pytest.fixture
def chromium():
    """Debian's chromium through Playwright (never a downloaded browser)."""
    import os

    require(os.path.exists(CHROMIUM), f"Debian chromium ({CHROMIUM})")
    from playwright.sync_api import sync_playwright

    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # the ORM is used from the test thread next to Playwright's loop
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


def test_rso_sees_the_psd_the_map_and_the_case_raised_by_the_psd_rule(live_server, tmp_path, settings, chromium):
    from dosereg.cases.models import Case
    from dosereg.exposure.models import Alert
    from dosereg.skindose.models import StudySkinDose
    from dosereg.web.models import PatientAccount
    from dosereg.web.services import user_create

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SITE_URL = live_server.url
    ensure_seed_data()
    user_create(username="psd-walk-rso", password=PASSWORD, role="rso", email="psd-walk-rso@hospital.test")
    when = (timezone.now() - dt.timedelta(days=2)).replace(microsecond=0, second=0)
    earlier = _import(tmp_path, when=when - dt.timedelta(days=40), n=4)
    study = _import(tmp_path, when=when, n=16)
    psd = StudySkinDose.objects.get(study=study).psd_gy
    assert psd > 3.0  # above the PSD substantial radiation dose level
    srdl = Alert.objects.get(rule_key="fgi-psd-srdl", study=study)
    case = Case.objects.get(members__alert=srdl)

    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, live_server.url, "psd-walk-rso")
    page.goto(f"{live_server.url}/studies/{study.pk}/")
    panel = page.locator("#skin-dose")
    text = panel.inner_text()
    assert "Peak skin dose" in text and f"{psd:.3g} Gy" in text.replace(",", "")
    wait_js(page, "document.querySelector('#skin-dose img').complete")
    assert page.evaluate("document.querySelector('#skin-dose img').naturalWidth") > 100  # the map, drawn
    case_line = panel.locator("[data-skin-case]")
    assert "peak skin dose levels reached" in case_line.inner_text()
    assert "skin check suggested by " + (study.study_datetime.date() + dt.timedelta(days=28)).isoformat() in case_line.inner_text()
    panel.screenshot(path=str(SHOTS / "skin-psd-study.png"))
    with page.expect_navigation():
        case_line.locator("a").click()
    assert page.url.rstrip("/").endswith(f"/alerts/{case.pk}")
    levels = page.locator("#levels").inner_text()
    assert "Peak skin dose substantial radiation dose level" in levels and "Ka,r substantial radiation dose level" in levels
    assert (study.study_datetime.date() + dt.timedelta(days=28)).isoformat() in page.content()  # suggested skin check
    page.screenshot(path=str(SHOTS / "skin-psd-case.png"), full_page=True)

    # the patient history: PSD per procedure, the cumulative sum labelled, the 60-day summed map
    page.goto(f"{live_server.url}/patients/{study.patient_id}/")
    hist = page.locator("#skin-history")
    assert "conservative sum" in hist.inner_text()
    img = hist.locator("#skin-sum-60 img")
    img.scroll_into_view_if_needed()
    wait_js(page, "document.querySelector('#skin-sum-60 img').complete")
    assert page.evaluate("document.querySelector('#skin-sum-60 img').naturalWidth") > 100
    hist.screenshot(path=str(SHOTS / "skin-psd-history.png"))
    assert page.locator("td[data-psd]").count() == 2
    page.close()

    # the patient's portal page: what to look for, when, whom to call
    patient_user = user_create(username="psd-walk-patient", password=PASSWORD, role="patient")
    PatientAccount.objects.create(patient_id=study.patient_id, user=patient_user, token_sha256="w" * 64,
                                  expires_at=timezone.now() + dt.timedelta(days=1), verified_at=timezone.now())
    page = chromium.new_page(viewport={"width": 390, "height": 844})
    login(page, live_server.url, "psd-walk-patient")
    page.goto(f"{live_server.url}/portal/exams/{study.pk}/")
    note = page.locator("#skin-reactions").inner_text()
    assert "reddening" in note and "weeks" in note and "Whom to call" in note
    page.screenshot(path=str(SHOTS / "skin-psd-portal.png"), full_page=True)
    assert page.locator("#skin-reactions").count() == 1
    page.goto(f"{live_server.url}/portal/exams/{earlier.pk}/")
    earlier_psd = StudySkinDose.objects.get(study=earlier).psd_gy
    assert (page.locator("#skin-reactions").count() == 1) == (earlier_psd >= 2.0)
    page.close()
    assert errors == []
