"""Staff registry: names and aliases, badges and wear periods, versioned settings with citations."""
from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from dosereg.staff.config import setting, setting_set, setting_value
from dosereg.staff.models import ScatterFactor, Site, StaffSetting
from dosereg.staff.names import display_name, normalise_name
from dosereg.staff.services import StaffError, badge_assign, badge_create, staff_create, staff_match

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("a,b", [
    ("Müller^Anna", "Anna Muller"),
    ("MÜLLER^ANNA", "anna mueller"),
    ("Müller, Anna", "Dr. Anna Müller"),
    ("Yamada^Tarou=山田^太郎=やまだ^たろう", "Tarou YAMADA"),
    ("O'Brien^Seán", "Sean OBrien"),
    ("Núñez^José^María", "José María Núñez"),
])
def test_name_variants_normalise_to_one_key(a, b):
    assert normalise_name(a) == normalise_name(b) != ""


def test_different_people_do_not_collide():
    assert normalise_name("Jones^Nora") != normalise_name("Nora Jones-Smith")
    assert display_name("Müller^Anna^M") == "Anna M Müller"


@given(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyzÄÖÜéèñ", min_size=1, max_size=8), min_size=1, max_size=4))
@hsettings(max_examples=60, deadline=None)
def test_order_and_case_never_matter(parts):
    assert normalise_name(" ".join(parts)) == normalise_name("^".join(reversed([p.upper() for p in parts])))


def test_match_by_alias_employee_id_and_ambiguity():
    anna = staff_create(name="Müller^Anna", employee_id="E1", role="first_operator", aliases=["A. Mueller"])
    assert staff_match("anna mueller") == (anna, "alias")
    assert staff_match("MUELLER^A") == (anna, "alias")
    assert staff_match("whoever", person_id="E1") == (anna, "employee_id")
    staff_create(name="Anna Muller", employee_id="E2")  # a second Anna Müller
    assert staff_match("Müller^Anna") == (None, "ambiguous")
    assert staff_match("Nobody^Known") == (None, "no_match")


def test_overlapping_wear_periods_of_a_badge_are_refused():
    a = staff_create(name="A^A", employee_id="E1")
    b = staff_create(name="B^B", employee_id="E2")
    badge = badge_create(badge_id="LX-1", position="over apron")
    assert badge.position == "collar"
    badge_assign(badge=badge, staff=a, start=date(2025, 1, 1), end=date(2025, 3, 31))
    with pytest.raises(StaffError, match="overlaps"):
        badge_assign(badge=badge, staff=b, start=date(2025, 3, 31))
    with pytest.raises(StaffError, match="overlaps"):
        badge_assign(badge=badge, staff=b, start=date(2024, 12, 1), end=date(2025, 1, 1))
    with pytest.raises(StaffError, match="before it starts"):
        badge_assign(badge=badge, staff=b, start=date(2025, 5, 1), end=date(2025, 4, 1))
    badge_assign(badge=badge, staff=b, start=date(2025, 4, 1))  # reissued after the first wearer
    with pytest.raises(StaffError, match="overlaps"):
        badge_assign(badge=badge, staff=a, start=date(2030, 1, 1))  # open-ended period still running
    with pytest.raises(StaffError, match="position"):
        badge_create(badge_id="LX-2", position="pocket")


def test_seeded_settings_carry_citations_and_marks():
    rows = list(StaffSetting.objects.all())
    assert len(rows) >= 25
    for r in rows:
        assert r.citation.strip() and r.verification in {"✔", "◐", "⚠"}, r.key
    assert setting_value("investigation.effective.I") == 1.25
    assert setting_value("investigation.lens.II") == 11.25
    assert setting_value("investigation.extremity.II") == 37.5
    assert setting_value("pregnancy.monthly") == 0.5
    assert setting_value("limit.lens.annual", regime="icrp") == 20.0
    assert setting_value("limit.lens.annual", regime="nrc") == 150.0
    assert setting_value("limit.effective.annual", regime="nrc") == 50.0
    assert setting("investigation.effective.I").verification == "◐"
    factors = {(f.role, f.quantity): f.factor_usv_per_gy_cm2 for f in ScatterFactor.objects.filter(device__isnull=True)}
    assert factors == {("first_operator", "hp3"): 0.94, ("second_operator", "hp3"): 0.33, ("nurse", "hp3"): 0.33,
                       ("radiographer", "hp3"): 0.16}
    assert all("Antic" in f.citation for f in ScatterFactor.objects.all())


def test_settings_are_versioned_and_site_specific():
    setting_set("investigation.effective.I", 1.0, citation="RSO committee minute 2026-03")
    s = setting("investigation.effective.I")
    assert (s.value, s.version, s.citation) == (1.0, 2, "RSO committee minute 2026-03")
    assert StaffSetting.objects.filter(key="investigation.effective.I").count() == 2  # history kept
    site = Site.objects.create(name="Stanford-like", limit_regime="nrc")
    setting_set("investigation.effective.I", 0.8, citation="site policy", site=site)
    assert setting_value("investigation.effective.I", site=site, regime="nrc") == 0.8
    assert setting_value("investigation.effective.I") == 1.0
    with pytest.raises(ValueError):
        setting_set("investigation.effective.I", 2.0, citation=" ")
