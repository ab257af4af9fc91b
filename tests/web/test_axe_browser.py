"""Accessibility (issue 17 acceptance): axe-core (bundled by axe-playwright-python, injected into the page; nothing
fetched) runs in Debian's Chromium on every page of every role, on a desktop and on a 375 px phone, and finds no
serious or critical violation. Also at 375 px: the clinical pages (dashboard, worklist, case, study, history,
patients) never scroll sideways, and every region that scrolls is reachable by keyboard and named.

Pages owned by other work in progress are listed in ``KNOWN`` with the rule they still break (reported, not
hidden: the test fails when such a page is clean, so the entry is removed once fixed)."""
from __future__ import annotations

import json

import pytest

from .test_browser import SHOTS, browser, login, site  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1440, "height": 900}
BLOCKING = ("serious", "critical")

# page name -> axe rule ids still violated there, owned by another scope of issue 17 (TODO for the lead)
KNOWN: dict[str, set[str]] = {}


def _axe():
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


def _context(browser, viewport):  # noqa: F811
    ctx = browser.new_context(viewport=viewport)
    pg = ctx.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    return ctx, pg


def _violations(axe, pg) -> list[dict]:
    res = axe.run(pg, options={"resultTypes": ["violations"]})
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"]][:4]}
            for v in res.response["violations"] if v["impact"] in BLOCKING]


def _case_ids():
    from dosereg.cases.models import Case

    return list(Case.objects.order_by("pk").values_list("pk", flat=True)[:1])


def _pages(d) -> dict[str, dict[str, str]]:
    pa, sa, sct = d.patients["a"], d.studies["a_angio"], d.studies["a_ct"]
    clinical = {
        "dashboard": "/dashboard/", "patients": "/patients/", "patients-search": "/patients/?q=PW&sort=-kap",
        "history": f"/patients/{pa.pk}/", "study-angio": f"/studies/{sa.pk}/", "study-ct": f"/studies/{sct.pk}/",
        "studies": "/studies/", "studies-filtered": "/studies/?modality=CT&sort=-dlp", "modality-ct": "/studies/modality/CT/",
        "protocols": "/protocols/", "protocol-overview": "/protocols/overview/", "protocol-names": "/protocols/names/", "drls": "/protocols/drls/",
        "technique": "/protocols/technique/",
    }
    rso = {**clinical, "worklist": "/alerts/", "due": "/alerts/due/", "incidents": "/alerts/incidents/",
           "staff": "/staff/"}
    for pk in _case_ids():
        rso["case"] = f"/alerts/{pk}/"
    return {
        "rso": rso,
        "physicist": clinical,
        "staff": {"staff-me": "/staff/me/"},
        "patient": {"portal": "/portal/", "portal-exam": f"/portal/exams/{sa.pk}/", "portal-print": "/portal/print/"},
        "admin": {"audit": "/audit/", "admin": "/admin/", "admin-cases": "/admin/cases/case/", "admin-rules": "/admin/exposure/rule/",
                  "staff": "/staff/"},
    }


def test_no_serious_or_critical_axe_violation_on_any_page_for_any_role(site, browser):  # noqa: F811
    base, d = site
    axe = _axe()
    found: dict[str, list] = {}
    clean_known: list[str] = []
    for viewport_name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        # anonymous pages
        ctx, pg = _context(browser, viewport)
        for name, url in (("login", "/login/"), ("not-found", "/no-such-page/")):
            pg.goto(base + url)
            v = _violations(axe, pg)
            if v:
                found[f"{viewport_name} anonymous {name}"] = v
        ctx.close()
        for role, pages in _pages(d).items():
            ctx, pg = _context(browser, viewport)
            login(pg, base, d.users[role].username)
            for name, url in pages.items():
                resp = pg.goto(base + url)
                assert resp.status == 200, (role, url, resp.status)
                pg.wait_for_load_state("load")
                v = _violations(axe, pg)
                allowed = KNOWN.get(name, set())
                rest = [x for x in v if x["id"] not in allowed]
                if allowed and not {x["id"] for x in v} & allowed:
                    clean_known.append(name)
                if rest:
                    found[f"{viewport_name} {role} {name} {url}"] = rest
            assert pg.errors == [], (role, pg.errors)
            ctx.close()
    (SHOTS.parent / "axe-violations.json").write_text(json.dumps(found, indent=1, ensure_ascii=False))
    assert found == {}, found
    assert clean_known == [], f"fixed, remove from KNOWN: {sorted(set(clean_known))}"


def _overflow(pg) -> dict:
    width = pg.evaluate("document.documentElement.scrollWidth")
    wide = pg.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1"
        " && !e.closest('.scroll-x')).slice(0, 5).map(e => e.tagName + '.' + e.className)")
    unreachable = pg.evaluate("""[...document.querySelectorAll('body *')].filter(e => {
        const s = getComputedStyle(e);
        return (s.overflowX === 'auto' || s.overflowX === 'scroll' || s.overflowY === 'auto' || s.overflowY === 'scroll')
          && (e.scrollWidth > e.clientWidth + 1 || e.scrollHeight > e.clientHeight + 1)
          && e !== document.scrollingElement && e !== document.body
          && !(e.tabIndex >= 0 && (e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')) && e.getAttribute('role'));
      }).map(e => e.tagName + '.' + e.className)""")
    return {"scroll_width": width, "inner_width": pg.evaluate("innerWidth"), "wide": wide, "unreachable": unreachable}


def test_clinical_pages_fit_a_375px_phone_and_every_scroll_region_is_keyboard_reachable(site, browser):  # noqa: F811
    base, d = site
    ctx, pg = _context(browser, PHONE)
    login(pg, base, d.users["rso"].username)
    pages = {k: v for k, v in _pages(d)["rso"].items()
             if k in ("dashboard", "worklist", "case", "study-angio", "study-ct", "history", "patients",
                      "patients-search", "studies", "due", "incidents")}
    assert "case" in pages, "the web data raise no case: nothing to test on the case page"
    bad = {}
    for name, url in pages.items():
        pg.goto(base + url)
        pg.wait_for_load_state("load")
        pg.wait_for_timeout(150)  # charts and the scroll-region script
        m = _overflow(pg)
        if m["scroll_width"] > m["inner_width"] or m["unreachable"]:
            bad[name] = m
        pg.screenshot(path=str(SHOTS / f"browse-phone375-{name}.png"), full_page=True)
        # a keyboard user reaches every scroll region with Tab and scrolls it with the arrow keys
        n = pg.evaluate("[...document.querySelectorAll('main .scroll-x')].filter(e => e.scrollWidth > e.clientWidth + 1).length")
        if n:
            box = pg.locator("main .scroll-x[tabindex='0']").first
            box.focus()
            before = box.evaluate("e => e.scrollLeft")
            pg.keyboard.press("ArrowRight")
            pg.keyboard.press("ArrowRight")
            pg.wait_for_timeout(100)
            assert box.evaluate("e => e.scrollLeft") > before or box.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), name
    assert bad == {}, bad
    assert pg.errors == []
    ctx.close()
    # desktop screenshots of the same pages, to look at
    ctx, pg = _context(browser, DESKTOP)
    login(pg, base, d.users["rso"].username)
    for name in ("patients", "history", "worklist", "case"):
        pg.goto(base + pages[name])
        pg.wait_for_load_state("load")
        pg.wait_for_timeout(150)
        pg.screenshot(path=str(SHOTS / f"browse-desktop-{name}.png"), full_page=True)
    ctx.close()
