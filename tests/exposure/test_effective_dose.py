"""dosereg.exposure.effective_dose: the one factor table (seeded rows) and E = k × DLP / c × KAP."""
from __future__ import annotations

import pytest

from dosereg.exposure import effective_dose as ED

pytestmark = pytest.mark.django_db


def _e(factors, **kw):
    args = dict(ct_events=[], has_events=False, study_regions=set(), all_regions=set(), age_years=40,
                dlp_total_mgy_cm=None, kap_total_gy_cm2=None)
    args.update(kw)
    return ED.study_effective_dose(factors, **args)


def test_ct_adult_child_unknown_region_and_cardiac():
    factors = ED.factor_table()
    e, detail = _e(factors, ct_events=[({"chest"}, 400.0)], has_events=True)
    assert e == pytest.approx(0.0145 * 400) and detail["partial"] is False  # ICRP 103 adult chest (Deak 2010)
    assert detail["label"].startswith("population-average estimate")
    e, _ = _e(factors, ct_events=[({"chest"}, 400.0)], has_events=True, age_years=8)
    assert e == pytest.approx(0.013 * 400)  # AAPM 96 paediatric, 10 y column
    e, detail = _e(factors, ct_events=[(set(), 400.0)], has_events=True, dlp_total_mgy_cm=400.0)
    assert e is None and "no verified conversion factor" in detail["reason"]
    e, detail = _e(factors, ct_events=[({"chest"}, 400.0), (set(), 100.0)], has_events=True)
    assert e == pytest.approx(5.8) and detail["partial"] is True and detail["events_without_factor"] == 1
    e, _ = _e(factors, dlp_total_mgy_cm=1000.0, study_regions={"head"})  # no events: k × the study's DLP
    assert e == pytest.approx(0.0019 * 1000)
    e, _ = _e(factors, kap_total_gy_cm2=50.0, all_regions={"cardiac"})
    assert e == pytest.approx(0.21 * 50)  # interventional cardiology E/KAP
    e, detail = _e(factors, kap_total_gy_cm2=50.0, all_regions={"pelvis"})
    assert e is None  # other E/KAP regions are unverified: not estimated


def test_no_other_module_holds_a_factor():
    """The web app's former copy of the k-factor table is gone: the portal reads the exposure app's estimate."""
    import dosereg.web.explain as explain

    assert not hasattr(explain, "K_FACTORS_ICRP103") and not hasattr(explain, "ct_effective_dose_msv")
