"""Study browser, study page and charts in a real browser (Debian's Chromium through Playwright), on a desktop and
on a 375 px phone: no clinical page is wider than the phone, every scrolling table is reachable by keyboard, the
filters survive in the URL, the export link carries them, and the charts have axis titles and units.
Screenshots go to test-artifacts/screenshots/ (browse-*.png)."""
from __future__ import annotations

import pytest
from tests.browser_wait import wait_js

from .test_browser import SHOTS, browser, login, site  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1440, "height": 900}


def _context(browser, viewport):  # noqa: F811
    ctx = browser.new_context(viewport=viewport, accept_downloads=True)
    pg = ctx.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" and not m.text.startswith("Failed to load") else None)
    return ctx, pg


def _no_overflow(pg, url: str) -> None:
    pg.goto(url)
    pg.wait_for_load_state("load")
    pg.wait_for_timeout(200)
    width = pg.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (url, width, pg.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 376 && !e.closest('.scroll-x'))"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className)"))
    # every region that scrolls sideways can be reached and scrolled with the keyboard, and is named
    bad = pg.evaluate("""[...document.querySelectorAll('main *')].filter(e => {
        const s = getComputedStyle(e);
        return (s.overflowX === 'auto' || s.overflowX === 'scroll') && e.scrollWidth > e.clientWidth + 1
          && !(e.tabIndex >= 0 && e.getAttribute('aria-label'));
      }).map(e => e.tagName + '.' + e.className)""")
    assert bad == [], (url, bad)


def test_phone_width_no_horizontal_overflow(site, browser):  # noqa: F811
    base, d = site
    ctx, pg = _context(browser, PHONE)
    login(pg, base, d.users["rso"].username)
    urls = {
        "dashboard": "/dashboard/", "studies": "/studies/", "studies-ct": "/studies/?modality=CT&sort=-dlp",
        "study-angio": f"/studies/{d.studies['a_angio'].pk}/", "study-ct": f"/studies/{d.studies['a_ct'].pk}/",
        "patient": f"/patients/{d.patients['a'].pk}/", "patients": "/patients/", "modality-rf": "/studies/modality/RF/",
        "protocols": "/protocols/", "protocol-overview": "/protocols/overview/", "protocol-names": "/protocols/names/", "drls": "/protocols/drls/",
        "technique": "/protocols/technique/", "staff": "/staff/",
    }
    for name, url in urls.items():
        _no_overflow(pg, base + url)
        if name in ("dashboard", "studies", "study-angio", "study-ct", "modality-rf"):
            pg.screenshot(path=str(SHOTS / f"browse-phone-{name}.png"), full_page=True)
    assert pg.errors == []
    ctx.close()


def test_physicist_filters_sorts_and_exports_in_the_browser(site, browser):  # noqa: F811
    base, d = site
    ctx, pg = _context(browser, DESKTOP)
    login(pg, base, d.users["physicist"].username)
    pg.goto(base + "/dashboard/")
    # the device trend: every week of the window, a silent week is 0 procedures
    wait_js(pg, "() => window.Chart && Chart.getChart(document.getElementById('trend-chart'))")
    trend = pg.evaluate("""(() => { const c = Chart.getChart(document.getElementById('trend-chart'));
        return {weeks: c.data.labels.length, zeros: c.data.datasets.every(d => d.data.every(v => v !== null)),
                y: c.options.scales.y.title.text}; })()""")
    assert trend["weeks"] >= 13 and trend["zeros"] and trend["y"] == "procedures per week", trend
    pg.screenshot(path=str(SHOTS / "browse-desktop-dashboard.png"), full_page=True)
    pg.click("nav.mainnav >> text=Studies")
    pg.wait_for_url("**/studies/")
    assert pg.locator("[data-study-row]").count() == len(d.studies)
    pg.click("details.filters > summary")
    pg.select_option("select[name=modality]", "CT")
    with pg.expect_navigation():
        pg.click("[data-study-filters] button[type=submit]")
    with pg.expect_navigation():
        pg.click("th[data-col=dlp] a")  # first click: largest first
    assert "modality=CT" in pg.url and "sort=-dlp" in pg.url
    cts = sorted((d.studies[k] for k in ("a_ct", "c_ct", "c_ct2")), key=lambda s: -s.dlp_total_mgy_cm)
    rows = [int(x) for x in pg.eval_on_selector_all("[data-study-row]", "els => els.map(e => e.dataset.studyRow)")]
    assert rows == [s.pk for s in cts]
    href = pg.get_attribute("[data-export=csv]", "href")
    assert "modality=CT" in href and "sort=-dlp" in href
    with pg.expect_download() as dl:
        pg.click("[data-export=csv]")
    text = open(dl.value.path(), encoding="utf-8-sig").read()
    assert all(s.study_instance_uid in text for s in cts) and d.studies["a_angio"].study_instance_uid not in text
    pg.screenshot(path=str(SHOTS / "browse-desktop-studies.png"), full_page=True)
    # the top 2 by DLP as a page of their own, exported as shown
    pg.goto(base + "/studies/?modality=CT&sort=-dlp&per_page=10")
    with pg.expect_download() as dl:
        pg.click("[data-export=page-csv]")
    assert open(dl.value.path(), encoding="utf-8-sig").read().count("\n") == 1 + len(cts)
    # the row links to the study page, whose event chart has titled axes with units and a legend
    with pg.expect_navigation():
        pg.click(f"[data-study-row='{cts[0].pk}'] a")
    wait_js(pg, "() => window.Chart && Chart.getChart(document.getElementById('events-chart'))")
    chart = pg.evaluate("""(() => { const c = Chart.getChart(document.getElementById('events-chart'));
        return {y: c.options.scales.y.title.text, y2: c.options.scales.y2.title.text, x: c.options.scales.x.title.text,
                legend: c.options.plugins.legend.display !== false, labels: c.data.datasets.map(s => s.label)}; })()""")
    assert "mGy·cm" in chart["y"] and "cumulative" in chart["y2"] and chart["x"] and chart["legend"]
    assert any(label.startswith("CT ") for label in chart["labels"]), chart["labels"]
    text = pg.inner_text("main")
    assert "CT spiral" in text and "ct_spiral" not in text and "Per plane" not in text
    pg.screenshot(path=str(SHOTS / "browse-desktop-study-ct.png"), full_page=True)
    pg.goto(base + f"/studies/{d.studies['a_angio'].pk}/")
    wait_js(pg, "() => window.Chart && Chart.getChart(document.getElementById('events-chart'))")
    pg.screenshot(path=str(SHOTS / "browse-desktop-study-angio.png"), full_page=True)
    # the event list filtered by type reaches the collapsed rows too
    from dosereg.registry.models import IrradiationEvent

    n_fluoro = IrradiationEvent.objects.filter(study=d.studies["a_angio"], event_type="fluoroscopy").count()
    n_all = IrradiationEvent.objects.filter(study=d.studies["a_angio"]).count()
    pg.select_option("[data-event-filter=type]", "fluoroscopy")
    assert pg.inner_text("[data-event-count]") == f"{n_fluoro} of {n_all} events shown"
    assert pg.locator("#events tbody tr[data-type]:visible").count() == n_fluoro
    assert pg.evaluate("document.querySelector('[data-more-events]').open")
    # the patient history: KAP, Ka,r and DLP each on its own plot, on a time axis
    pg.goto(base + f"/patients/{d.patients['a'].pk}/")
    wait_js(pg, "() => window.Chart && Chart.getChart(document.getElementById('history-kap'))")
    axes = pg.evaluate("""['history-kap', 'history-kar', 'history-dlp'].map(id => {
        const c = Chart.getChart(document.getElementById(id));
        return c ? [c.options.scales.x.type, c.options.scales.y.title.text] : null; })""")
    assert axes[0] == ["linear", "KAP (Gy·cm²)"] and axes[1][1] == "Ka,r (largest plane) (Gy)" and axes[2][1] == "DLP (mGy·cm)"
    pg.screenshot(path=str(SHOTS / "browse-desktop-patient.png"), full_page=True)
    # the CT home page: one plot per quantity, a line per room, titled axes
    pg.goto(base + "/studies/modality/CT/")
    wait_js(pg, "() => window.Chart && Chart.getChart(document.getElementById('modality-dlp_total_mgy_cm'))")
    y = pg.evaluate("Chart.getChart(document.getElementById('modality-dlp_total_mgy_cm')).options.scales.y.title.text")
    assert y == "median DLP (mGy·cm)"
    pg.screenshot(path=str(SHOTS / "browse-desktop-modality-ct.png"), full_page=True)
    # the protocol audit's histogram: titled axes with the unit, the reference level drawn as a line
    from dosereg.protocols.models import DRLValue, ProtocolMapping

    drl = DRLValue.objects.select_related("standard_name").filter(quantity="dlp_total_mgy_cm",
                                                                  standard_name__name="Chest (lung cancer)").first()
    ProtocolMapping.objects.create(modality="CT", source_name="CT Chest", standard_name=drl.standard_name)
    pg.goto(base + "/protocols/?modality=CT")
    # the box plot opens the group page: a histogram per quantity with axis titles and the reference level
    pg.locator("a[data-group-link][href*='#q-dlp_total_mgy_cm']").first.click()
    pg.wait_for_selector("[data-group-quantity=dlp_total_mgy_cm]")
    dlp = pg.locator("[data-group-quantity=dlp_total_mgy_cm]")
    assert dlp.locator("[data-axis-title=x]").text_content() == "DLP per study (mGy·cm)"
    assert dlp.locator("[data-axis-title=y]").text_content() == "studies"
    assert dlp.locator("[data-drl-line]").count() == 1 and "reference level" in dlp.inner_text()
    pg.screenshot(path=str(SHOTS / "browse-desktop-histogram.png"))
    assert pg.errors == []
    ctx.close()


def test_keyset_pager_next_previous_last_and_jump(site, browser):  # noqa: F811
    """The pager as a person uses it: next and previous (keyset: the cost of page 1 at any depth), last, and the
    "go to page" jump; row numbers are exact, no row is shown twice; the pager fits a phone."""
    from datetime import timedelta

    from django.db.models import F
    from django.utils import timezone

    from dosereg.registry.models import Study

    base, d = site
    ct = d.studies["c_ct"]
    now = timezone.now()
    Study.objects.bulk_create([
        Study(study_instance_uid=f"2.25.7777{i}", patient_id=ct.patient_id, device_id=ct.device_id,
              study_datetime=now - timedelta(hours=i), procedure_modality="CT", study_description=f"Pager CT {i}",
              dlp_total_mgy_cm=300.0 + (i % 7), ctdivol_max_mgy=5.0) for i in range(25)])
    from dosereg.exposure.recompute import patient_exposure_recompute

    patient_exposure_recompute(patient_id=ct.patient_id, notify=False)  # the pipeline's step 1 for these studies
    total = Study.objects.count()
    ctx, pg = _context(browser, DESKTOP)
    login(pg, base, d.users["physicist"].username)
    pg.goto(base + "/studies/?sort=-dlp&per_page=10")
    rows = lambda: pg.locator("[data-study-row]").evaluate_all("rs => rs.map(r => r.dataset.studyRow || r.querySelector('a').href)")  # noqa: E731
    pager = lambda: pg.locator("[data-pager] > span.muted").first.inner_text()  # noqa: E731
    seen = rows()
    assert pager() == f"1–10 of {total}"
    with pg.expect_navigation():
        pg.click("[data-page-link=next]")
    assert "after=" in pg.url and pager() == f"11–20 of {total}"
    second = rows()
    assert not set(second) & set(seen)
    with pg.expect_navigation():
        pg.click("[data-page-link=next]")
    third = rows()
    assert pager() == f"21–30 of {total}" and not set(third) & set(seen + second)
    with pg.expect_navigation():
        pg.click("[data-page-link=previous]")
    assert "before=" in pg.url and rows() == second and pager() == f"11–20 of {total}"
    with pg.expect_navigation():
        pg.click("[data-page-link=last]")
    last = total - (total - 1) // 10 * 10  # the rows after the full pages
    assert pager() == f"{total - last + 1}–{total} of {total}" and pg.locator("[data-page-link=next]").count() == 0
    pg.screenshot(path=str(SHOTS / "browse-desktop-pager-last.png"), full_page=True)
    pg.fill("[data-page-jump] input[name=page]", "2")
    with pg.expect_navigation():
        pg.click("[data-page-jump] button[type=submit]")
    assert "page=2" in pg.url and "sort=-dlp" in pg.url and rows() == second and pager() == f"11–20 of {total}"
    assert pg.errors == []
    ctx.close()
    ctx, pg = _context(browser, PHONE)
    login(pg, base, d.users["physicist"].username)
    _no_overflow(pg, base + "/studies/?sort=-dlp&per_page=10&after=" + str(Study.objects.order_by(F("dlp_total_mgy_cm").desc(nulls_last=True), "-pk")[9].pk))
    pg.screenshot(path=str(SHOTS / "browse-phone-pager.png"), full_page=True)
    _no_overflow(pg, base + "/patients/")
    pg.screenshot(path=str(SHOTS / "browse-phone-patients.png"), full_page=True)
    ctx.close()
    # the patients list as an RSO of every site: exams and last exam from each record's exposure state
    ctx, pg = _context(browser, DESKTOP)
    login(pg, base, d.users["rso"].username)
    pg.goto(base + "/patients/?sort=-exams")
    first = pg.locator("table tbody tr").first.inner_text()
    assert d.patients["c"].patient_id in first and "\t27\t" in first, first  # c: its 2 exams and the 25 added here
    pg.screenshot(path=str(SHOTS / "browse-desktop-patients.png"), full_page=True)
    assert pg.errors == []
    ctx.close()
