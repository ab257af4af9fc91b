"""The one formatting module (dosereg.formatting): rounding rule, one unit per quantity, min:s, machine values."""
from __future__ import annotations

import pytest

from dosereg import formatting as F


@pytest.mark.parametrize("v, text", [
    (None, "—"), (0, "0"), (0.0, "0"), (1.0, "1"), (1.2, "1.2"), (1.234, "1.23"), (12.345, "12.3"), (99.96, "100"),
    (123.4, "123"), (1234.5, "1,234"), (123456.0, "123,456"), (0.0123456, "0.0123"), (0.000012345, "0.0000123"),
    (-1.234, "-1.23"), (9.996, "10"), (478.61458000000005, "479"),
])
def test_number_three_significant_figures_integer_digits_kept(v, text):
    assert F.number(v) == text


def test_number_options():
    assert F.number(None, missing="") == ""
    assert F.number(1234.5, grouping=False) == "1234"
    assert F.number(0.12345, sig=2) == "0.12"
    assert "e" not in F.number(1.5e-9)


@pytest.mark.parametrize("s, text", [(None, "—"), (0, "0:00"), (59.4, "0:59"), (59.6, "1:00"), (185, "3:05"), (3725, "62:05")])
def test_minsec(s, text):
    assert F.minsec(s) == text


def test_convert_one_table_and_refuses_mixed_dimensions():
    assert F.convert(1.5, "Gy", "mGy") == pytest.approx(1500)
    assert F.convert(250, "mGy", "Gy") == pytest.approx(0.25)
    assert F.convert(1.0, "µGy·m²", "Gy·cm²") == pytest.approx(0.01)
    assert F.convert(2.0, "min", "s") == 120
    assert F.convert(None, "Gy", "mGy") is None
    with pytest.raises(ValueError):
        F.convert(1.0, "Gy", "mGy·cm")


def test_one_unit_per_quantity_whatever_the_magnitude():
    # issue 17 part 4: Ka,r is in Gy on every page (the study page had said "8 Gy" where the portal said
    # "8,000 mGy"), small or large; every other quantity in its stored unit too
    assert F.display_unit("dose_rp_max_plane_gy") == F.display_unit("kar_gy") == "Gy"
    assert F.with_unit("kar_gy", 8.0) == "8 Gy" and F.with_unit("dose_rp_gy", 0.4567) == "0.457 Gy"
    assert F.with_unit("psd_gy", 1.93) == "1.93 Gy"  # PSD beside Ka,r in the same unit
    assert F.display_unit("dap_total_gy_cm2") == "Gy·cm²" and F.display_unit("dlp_total_mgy_cm") == "mGy·cm"
    assert F.display_unit("fluoro_time_total_s") == "min:s"
    assert F.with_unit("nm_paed_activity_mbq", 212.4) == "212 MBq"


def test_consistent_text():
    assert F.dose("kar_max_gy", 1.234) == "Ka,r 1.23 Gy"
    assert F.dose("dose_rp_gy", 0.4567) == "Ka,r 0.457 Gy"
    assert F.dose("dap_total_gy_cm2", 45.61) == "KAP 45.6 Gy·cm²"
    assert F.dose("dlp_mgy_cm", 512.4) == "DLP 512 mGy·cm"
    assert F.dose("ctdivol_max_mgy", 12.34) == "CTDIvol 12.3 mGy"
    assert F.dose("fluoro_time_total_s", 185) == "Fluoro time 3:05 min:s"
    assert F.dose("kap_gy_cm2", None) == "KAP not reported"
    assert F.with_unit("kar_gy", 2.5, "mGy") == "2,500 mGy"  # an explicit unit (an import, a threshold) converts
    assert F.value("dose_rp_max_plane_gy", 0.05, "mGy") == "50"
    assert F.value("fluoro_time_s", 65) == "1:05"


def test_machine_values_are_numbers_without_float_noise():
    assert F.machine(478.61458000000005) == 478.61458
    assert F.machine(0.1 + 0.2) == 0.3
    assert F.machine(2.303985) == 2.303985  # a device's digits are kept
    assert F.machine(1.2345678912e-5) == 1.23456789e-5
    assert F.machine(None) is None and F.machine(7) == 7 and F.machine(0.0) == 0.0
    assert isinstance(F.machine(2.0), float)
