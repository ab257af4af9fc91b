"""Skin dose through the registry: a builder-made high-dose fluoroscopy procedure is ingested through the pipeline,
its PSD is computed by the skin task and stored, and an RSO sees the PSD, the map and the 3D view in Chromium."""
from __future__ import annotations

import datetime as dt
import os

import pytest

from dicom_listener.spool import Spool
from dosereg.pipeline.flow import file_import
from dosereg.rdsr import builder as b
from dosereg.registry.models import DoseObject
from dosereg.skindose.models import SkinRoomSetting, StudySkinDose
from dosereg.skindose.services import study_skin_dose_compute
from tests.conftest import require
from tests.browser_wait import wait_js

from ..web.data import PASSWORD
from ..web.test_browser import ARGS, CHROMIUM, SHOTS


def _geometry_event(**kw) -> b.ProjectionEventSpec:
    base = dict(dose_rp_gy=0.5, dap_gy_cm2=40.0, kvp=80.0, event_type="fluoroscopy", positioner_primary_angle_deg=0.0,
                positioner_secondary_angle_deg=0.0, distance_source_to_detector_mm=1200.0,
                distance_source_to_isocenter_mm=800.0, table_longitudinal_position_mm=0.0,
                table_lateral_position_mm=500.0, table_height_position_mm=0.0, collimated_field_area_m2=0.01,
                filters=[("copper", 0.1)])
    base.update(kw)
    return b.ProjectionEventSpec(**base)


def high_dose_study(tmp_path, spool, *, patient_id="SKIN-1", n=8, **event):
    spec = b.ProjectionRDSRSpec(study_datetime=dt.datetime(2026, 11, 30, 9), manufacturer="Siemens",
                                model="AXIOM-Artis", patient_id=patient_id, patient_name="Skin^Test",
                                events=[_geometry_event(**event) for _ in range(n)])
    path = b.write(b.build_projection_rdsr(spec), tmp_path / f"{patient_id}.dcm")
    obj, _ = file_import(path=path, spool=spool)
    return DoseObject.objects.get(pk=obj.pk)


@pytest.mark.django_db
def test_ingest_computes_and_stores_the_psd_with_its_map(tmp_path, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):  # the pipeline queues the skin task after the commit
        obj = high_dose_study(tmp_path, Spool(tmp_path / "spool"))
    row = StudySkinDose.objects.get(study_id=obj.study_id)
    assert row.computable and row.psd_gy > 2.0  # 8 overlapping 0.5 Gy fields on one skin area
    assert row.psd_gy < row.kar_total_gy * 2.0
    assert bytes(row.map_png)[:8] == b"\x89PNG\r\n\x1a\n" and len(row.map_cells["dose_gy"]) > 100
    assert len(row.events_used) == 8 and row.events_skipped == []
    # a room setting (a measured table transmission) is used on the next computation, and recorded
    SkinRoomSetting.objects.create(device_id=obj.device_id, table_pad_transmission=0.5,
                                   transmission_source="measured 2026-11, 80 kV, 0.1 mm Cu")
    again = study_skin_dose_compute(study_id=obj.study_id)
    assert again.room_setting.table_pad_transmission == 0.5
    assert again.psd_gy == pytest.approx(row.psd_gy * 0.5 / 0.8, rel=0.001)


@pytest.mark.django_db
def test_a_study_without_geometry_records_the_reason_and_the_kar_estimate(tmp_path, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        obj = high_dose_study(tmp_path, Spool(tmp_path / "spool"), patient_id="SKIN-2", n=3,
                              table_height_position_mm=None)
    row = StudySkinDose.objects.get(study_id=obj.study_id)
    assert not row.computable and row.psd_gy is None
    assert "geometry" in row.not_computable_reason
    assert row.kar_total_gy == pytest.approx(1.5)
    assert all("no table height position" in s["reason"] for s in row.events_skipped)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_rso_sees_the_psd_the_map_and_the_3d_view(live_server, tmp_path, settings):
    require(os.path.exists(CHROMIUM), f"Debian chromium ({CHROMIUM})")
    from playwright.sync_api import sync_playwright

    from dosereg.web.services import user_create
    from tests.web.data import ensure_seed_data

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    ensure_seed_data()
    user_create(username="skin-rso", password=PASSWORD, role="rso")
    obj = high_dose_study(tmp_path, Spool(tmp_path / "spool"), patient_id="SKIN-3")
    study_skin_dose_compute(study_id=obj.study_id)  # what the skin task does
    psd = StudySkinDose.objects.get(study_id=obj.study_id).psd_gy
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(live_server.url + "/login/")
        page.fill("input[name=username]", "skin-rso")
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
        page.goto(f"{live_server.url}/studies/{obj.study_id}/")
        panel = page.locator("#skin-dose")
        assert "Peak skin dose" in panel.inner_text()
        assert f"{psd:.3g}" in panel.inner_text().replace(",", "")
        img = panel.locator("img")
        img.scroll_into_view_if_needed()
        wait_js(page, "document.querySelector('#skin-dose img').complete")
        assert page.evaluate("document.querySelector('#skin-dose img').naturalWidth") > 100
        panel.screenshot(path=str(SHOTS / "skin_dose_panel.png"))
        page.click("text=3D view of the skin-dose map")
        page.wait_for_selector("#skin-3d[data-drawn='1']", timeout=30000)
        assert page.locator("#skin-3d .plot-container").count() == 1
        page.screenshot(path=str(SHOTS / "skin_dose_3d.png"))
        assert errors == []
        browser.close()


@pytest.mark.django_db
def test_only_fluoroscopically_guided_studies_get_a_skin_dose_task(tmp_path):
    from dosereg.skindose.selectors import studies_with_kar

    spool = Spool(tmp_path / "spool")
    fluoro = high_dose_study(tmp_path, spool, patient_id="SKIN-RF", n=2)
    radiograph = high_dose_study(tmp_path, spool, patient_id="SKIN-DX", n=1, event_type="stationary")
    assert radiograph.study.procedure_modality not in ("RF", "XA")
    assert studies_with_kar([fluoro.study_id, radiograph.study_id]) == [fluoro.study_id]


@pytest.mark.django_db
def test_the_api_carries_the_psd_with_its_caveats(tmp_path):
    from rest_framework.test import APIClient

    from dosereg.web.services import user_create
    from tests.web.data import ensure_seed_data

    ensure_seed_data()
    rso = user_create(username="skin-api-rso", password="x-Long-Pass-123", role="rso")
    obj = high_dose_study(tmp_path, Spool(tmp_path / "spool"), patient_id="SKIN-API", n=4)
    row = study_skin_dose_compute(study_id=obj.study_id)
    client = APIClient()
    client.force_authenticate(rso)
    data = client.get(f"/api/v1/studies/{obj.study_id}/").json()
    skin = data["skin_dose"]
    assert skin["computable"] and skin["psd_gy"] == pytest.approx(row.psd_gy)
    assert skin["events_used"] == 4 and "not a skin dose" in skin["kar_total_label"]
    assert skin["uncertainty"] and skin["method"].startswith("PySkinDose")
    ct = high_dose_study(tmp_path, Spool(tmp_path / "spool2"), patient_id="SKIN-API-2", n=1, event_type="stationary")
    assert client.get(f"/api/v1/studies/{ct.study_id}/").json()["skin_dose"] is None  # no result for a radiograph
