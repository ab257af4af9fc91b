"""Protocol audit in a real browser (Debian's Chromium through Playwright), issue 17 acceptance: an audit cell
drills down to exactly the studies behind its median; mapping a name needs a confirmation; a cross-anatomy
suggestion is never offered. Screenshots: /tmp/audit-*.png and test-artifacts/screenshots/audit-*.png."""
from __future__ import annotations

import re
import shutil

import pytest

from dosereg.audit.models import AuditEvent
from dosereg.protocols.models import ProtocolMapping, StandardName
from dosereg.registry.models import Study

from .test_browser import SHOTS, browser, login, site  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _shot(pg, name: str) -> None:
    path = SHOTS / f"audit-{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    shutil.copy(path, f"/tmp/audit-{name}.png")


def _shown_ids(pg) -> set[int]:
    return {int(x) for x in pg.eval_on_selector_all("[data-study-row]", "els => els.map(e => e.dataset.studyRow)")}


def test_audit_drill_down_confirmed_mapping_and_no_cross_anatomy_suggestion(site, browser):  # noqa: F811
    base, d = site
    ct = d.studies["a_ct"]
    # a coronary CT angiogram on the same scanner: its nearest-sounding national DRL name is the CTPA, never offered
    coronary = d.studies["c_ct2"]
    Study.objects.filter(pk=coronary.pk).update(study_description="CT Coronary angiogram", device_id=ct.device_id)
    Study.objects.filter(pk=d.studies["c_ct"].pk).update(device_id=ct.device_id)  # two chest studies on one scanner
    chest_ids = set(Study.objects.filter(device_id=ct.device_id, study_description="CT Chest", has_ionising_dose=True,
                                         not_patient_reason="").values_list("pk", flat=True))
    assert len(chest_ids) == 2
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    login(pg, base, d.users["physicist"].username)

    # 1. day one, nothing mapped: the scanner's chest and coronary studies are separate rows under their own names
    pg.goto(base + "/protocols/?modality=CT")
    names = pg.eval_on_selector_all("[data-unmapped-name]", "els => els.map(e => e.textContent.trim())")
    assert "CT Chest" in names and "CT Coronary angiogram" in names, names
    _shot(pg, "day-one")
    # the DLP median of the scanner's "CT Chest" row
    target = [lk for lk in pg.locator("a[data-drill=median]").all()
              if f"device={ct.device_id}&" in (lk.get_attribute("href") or "")
              and "description=CT+Chest&" in (lk.get_attribute("href") or "") + "&"
              and "reported=dlp_mgy_cm" in (lk.get_attribute("href") or "")]
    assert len(target) == 1
    assert target[0].get_attribute("data-n") == "2"
    target[0].click()
    pg.wait_for_url("**/studies/?**")
    assert _shown_ids(pg) == chest_ids  # exactly the studies behind the median, no more, no fewer
    assert pg.locator("[data-drilldown-filters]").inner_text().count("CT Chest") == 1
    _shot(pg, "drilldown")

    # 2. suggestions: with a confidence, within the body region; never the CTPA for the coronary CTA
    pg.goto(base + "/protocols/names/")
    chest_row = pg.locator("tr[data-mapping-row][data-source='CT Chest']")
    assert chest_row.locator("[data-suggestion]").inner_text() == "Chest (lung cancer)"
    assert re.fullmatch(r"\d{1,3}\s% confidence", chest_row.locator("[data-confidence]").inner_text().replace("\xa0", " "))
    coro_row = pg.locator("tr[data-mapping-row][data-source='CT Coronary angiogram']")
    assert coro_row.locator("[data-suggestion]").count() == 0
    assert "CTPA" not in coro_row.inner_text() and "pulmonary" not in coro_row.inner_text().lower()
    _shot(pg, "names")

    # 3. accepting a suggestion is not one click: Review… shows what changes, nothing is written until Confirm
    chest_row.locator("[data-review-suggestion]").click()
    pg.wait_for_selector("[data-confirm-mapping]")
    assert "Chest (lung cancer)" in pg.locator("[data-target]").inner_text()
    assert not ProtocolMapping.objects.filter(source_name="CT Chest").exists()
    _shot(pg, "confirm")
    pg.click("[data-confirm-mapping]")
    pg.wait_for_url("**/protocols/names/")
    chest = StandardName.objects.get(modality="CT", name="Chest (lung cancer)")
    assert ProtocolMapping.objects.get(modality="CT", source_name="CT Chest").standard_name == chest
    assert AuditEvent.objects.filter(object_type="protocol_mapping", object_id="CT:CT Chest",
                                     action=AuditEvent.ACTION_CHANGE).count() == 1
    assert pg.locator("tr[data-mapping-row][data-source='CT Chest'] [data-state]").inner_text() == "Chest (lung cancer)"

    # 4. a manual cross-anatomy choice is flagged on the confirm page (bulk form), and can be cancelled
    pg.check("tr[data-mapping-row][data-source='CT Coronary angiogram'] input[type=checkbox]")
    ctpa = StandardName.objects.get(modality="CT", name="CT pulmonary angiogram (CTPA)")
    pg.select_option("select[name=standard_name][form=bulk-map]", str(ctpa.pk))
    pg.click("[data-bulk-submit]")
    pg.wait_for_selector("[data-confirm-mapping]")
    assert "body region differs" in pg.locator("[data-warning]").first.inner_text()
    _shot(pg, "confirm-cross-anatomy")
    pg.click("text=Cancel")
    assert not ProtocolMapping.objects.filter(source_name="CT Coronary angiogram").exists()

    # 5. the mapped row: overview chart (every room on one axis, DRL line), reached from the audit with its
    # filters, and its bar drills down exactly
    pg.goto(base + "/protocols/?modality=CT")
    pg.click("[data-overview-link] a.btn")
    pg.wait_for_url("**/protocols/overview/?**modality=CT**")
    chart = pg.locator("[data-overview-chart=dlp_total_mgy_cm]").filter(has_text="Chest (lung cancer)")
    assert chart.count() == 1 and chart.locator("line.ov-drl").count() >= 1
    assert "median DLP (mGy·cm)" in chart.inner_text()
    _shot(pg, "overview")
    chart.locator("a[data-overview-bar]").first.click()
    pg.wait_for_url("**/studies/?**")
    assert _shown_ids(pg) == chest_ids

    # 6. the group page: histogram with axis titles and the DRL line; a bar opens exactly its studies
    pg.goto(base + "/protocols/?modality=CT")
    pg.locator("a[data-group-link]").first.click()
    pg.wait_for_selector("[data-group-quantity]")
    dlp = pg.locator("[data-group-quantity=dlp_total_mgy_cm]")
    assert dlp.locator("[data-axis-title=x]").text_content() == "DLP per study (mGy·cm)"
    assert dlp.locator("[data-axis-title=y]").text_content() == "studies"
    assert dlp.locator("[data-drl-line]").count() == 1
    _shot(pg, "group")
    bar = dlp.locator("a[data-hist-bar]").first
    bar_n = int(bar.get_attribute("data-n"))
    bar.click()
    pg.wait_for_url("**/studies/?**")
    ids = _shown_ids(pg)
    assert len(ids) == bar_n and ids <= chest_ids

    # 7. technique per protocol and room (issue 16), and the audit on a phone
    pg.goto(base + "/protocols/technique/")
    assert pg.locator("[data-technique]").count() == 1 and pg.locator("[data-mammo-agd]").count() == 1
    _shot(pg, "technique")

    # 8. a paediatric protocol used for every age: one row per RP 185 age band, each against its own DRL; a band
    # row's count opens exactly its studies
    from dosereg.protocols.models import DRLSet
    from dosereg.web.services import protocol_mapping_set

    infant = d.studies["c_ct2"]
    Study.objects.filter(pk=infant.pk).update(study_description="Paed head", patient_age_years=0.5)
    DRLSet.objects.filter(name__startswith="EU paediatric CT DRLs").update(active=True)
    protocol_mapping_set(modality="CT", source_name="Paed head",
                         standard_name=StandardName.objects.get(modality="CT", name="Paediatric head"))
    pg.goto(base + "/protocols/?modality=CT")
    band_row = pg.locator("tr:has(td[data-age-band='3m-1y'])")
    assert band_row.count() == 1 and "3 months to 1 year" in band_row.inner_text()
    assert "EU paediatric CT DRLs" in band_row.inner_text()
    _shot(pg, "age-band")
    band_row.locator("a[data-drill=n]").click()
    pg.wait_for_url("**/studies/?**")
    assert _shown_ids(pg) == {infant.pk}
    assert errors == []
    ctx.close()
    phone = browser.new_context(viewport={"width": 375, "height": 812})
    pp = phone.new_page()
    login(pp, base, d.users["physicist"].username)
    pp.goto(base + "/protocols/?modality=CT")
    assert pp.evaluate("document.documentElement.scrollWidth") <= 375
    _shot(pp, "phone")
    pp.goto(base + pp.locator("a[data-group-link]").first.get_attribute("href"))
    assert pp.evaluate("document.documentElement.scrollWidth") <= 375
    # the charts scroll sideways in a named region reachable by keyboard
    assert pp.evaluate("[...document.querySelectorAll('.chart-scroll')].every(e => e.tabIndex >= 0 && e.getAttribute('aria-label'))")
    _shot(pp, "phone-group")
    phone.close()
