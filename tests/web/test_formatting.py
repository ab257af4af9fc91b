"""The one formatting module (dosereg.formatting): rounding rule, units, Gy/mGy choice, min:s, machine values."""
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


def test_gy_mgy_choice_for_kar():
    assert F.display_unit("dose_rp_max_plane_gy", 1.234) == "Gy"
    assert F.display_unit("kar_gy", 0.4567) == "mGy"
    assert F.display_unit("dap_total_gy_cm2", 0.001) == "Gy·cm²"  # only Ka,r switches


def test_consistent_text():
    assert F.dose("kar_max_gy", 1.234) == "Ka,r 1.23 Gy"
    assert F.dose("dose_rp_gy", 0.4567) == "Ka,r 457 mGy"
    assert F.dose("dap_total_gy_cm2", 45.61) == "KAP 45.6 Gy·cm²"
    assert F.dose("dlp_mgy_cm", 512.4) == "DLP 512 mGy·cm"
    assert F.dose("ctdivol_max_mgy", 12.34) == "CTDIvol 12.3 mGy"
    assert F.dose("fluoro_time_total_s", 185) == "Fluoro time 3:05 min:s"
    assert F.dose("kap_gy_cm2", None) == "KAP not reported"
    assert F.with_unit("kar_gy", 2.5, "mGy") == "2,500 mGy"  # a fixed unit (a table column) wins
    assert F.value("dose_rp_max_plane_gy", 0.05, "mGy") == "50"
    assert F.value("fluoro_time_s", 65) == "1:05"


def test_machine_values_are_numbers_without_float_noise():
    assert F.machine(478.61458000000005) == 478.61458
    assert F.machine(0.1 + 0.2) == 0.3
    assert F.machine(2.303985) == 2.303985  # a device's digits are kept
    assert F.machine(1.2345678912e-5) == 1.23456789e-5
    assert F.machine(None) is None and F.machine(7) == 7 and F.machine(0.0) == 0.0
    assert isinstance(F.machine(2.0), float)
