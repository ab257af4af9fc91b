"""The Devices pages in a real browser (Debian's Chromium through Playwright): an admin finds a unit seen as two
devices, merges them (with the confirmation), splits the wrong identity off again and renames it; a physicist
sees no actions; at 375 px the pages do not scroll sideways and the tables are reachable by keyboard.
Screenshots go to test-artifacts/screenshots/ (devices-*.png)."""
from __future__ import annotations

import pytest

from dosereg.registry.models import Device, Study

from .test_browse_browser import DESKTOP, PHONE, _context, _no_overflow
from . import test_browser
from .test_browser import SHOTS, login
from .test_devices_pages import build_devices

browser = test_browser.browser  # the Chromium fixture, shared
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def device_site(live_server, tmp_path, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return live_server.url, build_devices(tmp_path)


def test_admin_merges_splits_and_renames_in_the_browser(device_site, browser):
    base, d = device_site
    a1, a2 = d["ids"]["a1"], d["ids"]["a2"]
    ctx, pg = _context(browser, DESKTOP)
    login(pg, base, d["users"]["admin"].username)
    pg.goto(base + "/dashboard/")
    pg.click("nav.mainnav >> text=Devices")
    pg.wait_for_url("**/devices/")
    assert pg.locator("[data-device-row]").count() == 3
    gap = pg.locator(f"[data-device-row='{a1}'] [data-gap]").inner_text()
    assert gap == "1 h", gap
    pg.screenshot(path=str(SHOTS / "devices-list.png"), full_page=True)

    pg.click(f"[data-device-row='{a2}'] a[href='/devices/{a2}/']")
    pg.wait_for_url(f"**/devices/{a2}/")
    pg.select_option("[data-merge-form] select[name=target]", str(a1))
    pg.click("[data-merge-form] button[type=submit]")  # not confirmed: the browser refuses (required checkbox)
    assert pg.url.endswith(f"/devices/{a2}/")
    pg.check("[data-merge-form] input[name=confirm]")
    with pg.expect_navigation():
        pg.click("[data-merge-form] button[type=submit]")
    assert pg.url.endswith(f"/devices/{a1}/")
    assert "merged into" in pg.locator(".messages").inner_text()
    assert pg.locator("[data-identity-row]").count() == 2
    pg.screenshot(path=str(SHOTS / "devices-detail-merged.png"), full_page=True)

    # that was wrong: split the A2 identity off again, under a new name
    row = pg.locator("[data-identity-row]", has_text="A2-SN")
    row.locator("input[type=checkbox]").check()
    pg.fill("[data-split-form] input[name=display_name]", "Angio 2 (split)")
    with pg.expect_navigation():
        pg.click("[data-split-form] button[type=submit]")
    new = Device.objects.get(display_name="Angio 2 (split)")
    assert pg.url.endswith(f"/devices/{new.pk}/")
    assert Study.objects.filter(device=new).count() == 1
    pg.fill("[data-rename-form] input[name=display_name]", "Angio room 2")
    with pg.expect_navigation():
        pg.click("[data-rename-form] button[type=submit]")
    assert pg.locator("h1").inner_text() == "Angio room 2"
    pg.screenshot(path=str(SHOTS / "devices-detail-split-renamed.png"), full_page=True)
    assert pg.errors == []
    ctx.close()


def test_physicist_reads_only_and_phone_width_fits(device_site, browser):
    base, d = device_site
    ctx, pg = _context(browser, PHONE)
    login(pg, base, d["users"]["physicist"].username)
    for name, url in (("list", "/devices/"), ("detail", f"/devices/{d['ids']['a1']}/")):
        _no_overflow(pg, base + url)
        assert pg.locator("[data-merge-form], [data-split-form], [data-rename-form]").count() == 0
        pg.screenshot(path=str(SHOTS / f"devices-phone-{name}.png"), full_page=True)
    # with the action forms (an admin, a device with two identities) the detail page still fits
    from dosereg.registry.devices import device_merge

    device_merge(source_id=d["ids"]["a2"], target_id=d["ids"]["a1"])
    assert pg.errors == []
    ctx.close()
    ctx, pg = _context(browser, PHONE)
    login(pg, base, d["users"]["admin"].username)
    _no_overflow(pg, base + f"/devices/{d['ids']['a1']}/")
    assert pg.locator("[data-merge-form], [data-split-form], [data-rename-form]").count() == 3
    pg.screenshot(path=str(SHOTS / "devices-phone-detail-admin.png"), full_page=True)
    assert pg.errors == []
    ctx.close()
