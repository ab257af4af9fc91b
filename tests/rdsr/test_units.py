"""Table-driven unit conversion tests."""
from __future__ import annotations

import pytest

from dosereg.rdsr.units import convert, norm_unit, parse_number

CASES = [
    # (value, unit code, quantity, expected)
    # DAP -> Gy.cm2 (1 Gy.m2 = 1e4 Gy.cm2)
    (1.6e-5, "Gy.m2", "dap_gy_cm2", 0.16),
    (1.6e-5, "Gym2", "dap_gy_cm2", 0.16),
    (1.6e-5, "GYM2", "dap_gy_cm2", 0.16),
    (126.596, "dGy.cm2", "dap_gy_cm2", 12.6596),
    (126.596, "dGycm2", "dap_gy_cm2", 12.6596),
    (50.0, "cGy.cm2", "dap_gy_cm2", 0.5),
    (500.0, "mGy.cm2", "dap_gy_cm2", 0.5),
    (100.0, "uGy.m2", "dap_gy_cm2", 1.0),
    (100.0, "µGy.m2", "dap_gy_cm2", 1.0),
    (0.2359, "Gy.cm^2", "dap_gy_cm2", 0.2359),
    (0.2359, "Gy.cm2", "dap_gy_cm2", 0.2359),
    (0.2359, "Gy·cm²", "dap_gy_cm2", 0.2359),
    # dose -> Gy
    (0.00252, "Gy", "dose_gy", 0.00252),
    (30.573, "mGy", "dose_gy", 0.030573),
    (384.0, "uGy", "dose_gy", 0.000384),
    (3.0, "dGy", "dose_gy", 0.3),
    (5.0, "cGy", "dose_gy", 0.05),
    # dose -> mGy (CTDIvol)
    (9.91, "mGy", "dose_mgy", 9.91),
    (0.00991, "Gy", "dose_mgy", 9.91),
    (9910.0, "uGy", "dose_mgy", 9.91),
    # DLP -> mGy.cm
    (724.52, "mGycm", "dlp_mgy_cm", 724.52),
    (236.09, "mGy.cm", "dlp_mgy_cm", 236.09),
    (236.09, "MGY.CM", "dlp_mgy_cm", 236.09),
    (0.5, "Gy.cm", "dlp_mgy_cm", 500.0),
    (100.0, "mGy.mm", "dlp_mgy_cm", 10.0),
    # time
    (28.0, "s", "time_s", 28.0),
    (580.0, "ms", "time_s", 0.58),
    (2.0, "min", "time_s", 120.0),
    (1.5, "s", "time_ms", 1500.0),
    (100.8, "ms", "time_ms", 100.8),
    (500.0, "us", "time_ms", 0.5),
    # electrical
    (77.0, "kV", "kv", 77.0),
    (95.1, "mA", "ma", 95.1),
    (500.0, "uA", "ma", 0.5),
    (9586.0, "uAs", "charge_uas", 9586.0),
    (800.0, "uA.s", "charge_uas", 800.0),
    (1.04, "mAs", "charge_uas", 1040.0),
    (1.04, "mA.s", "charge_uas", 1040.0),
    # geometry
    (1200.0, "mm", "length_mm", 1200.0),
    (120.0, "cm", "length_mm", 1200.0),
    (1.2, "m", "length_mm", 1200.0),
    (33.3, "deg", "angle_deg", 33.3),
    (33.3, "°", "angle_deg", 33.3),
    (0.041968, "m2", "area_m2", 0.041968),
    (419.68, "cm2", "area_m2", 0.041968),
    # dimensionless / rates
    (27.0, "1", "count", 27.0),
    (1.38, "{ratio}", "count", 1.38),
    (6.0, "{events}", "count", 6.0),
    (1.0, "{X-Ray sources}", "count", 1.0),
    (1.0, "X-ray sources", "count", 1.0),
    (7.5, "{pulse}/s", "rate_per_s", 7.5),
    (1.25, "W/kg", "sar_w_kg", 1.25),
    (42.0, "T/s", "db_dt_t_s", 42.0),
]


@pytest.mark.parametrize("value,unit,quantity,expected", CASES)
def test_convert(value, unit, quantity, expected):
    warnings: list[str] = []
    assert convert(value, unit, quantity, warnings.append) == pytest.approx(expected, rel=1e-9)
    assert warnings == []


@pytest.mark.parametrize("value", ["1.6e-005", " 1.6E-05 ", "0.000016"])
def test_string_values(value):
    assert convert(value, "Gym2", "dap_gy_cm2") == pytest.approx(0.16)


@pytest.mark.parametrize(
    "unit,quantity",
    [
        ("furlong", "dap_gy_cm2"),
        ("Gy", "dap_gy_cm2"),       # a dose where an area-dose is expected
        ("Gy.m2", "dose_gy"),
        ("mGy", "dlp_mgy_cm"),
        ("kV", "ma"),
        ("", "dose_gy"),            # missing unit for a dimensioned quantity
        (None, "kv"),
        ("s", "length_mm"),
    ],
)
def test_unknown_unit_is_null_with_warning(unit, quantity):
    warnings: list[str] = []
    assert convert(1.0, unit, quantity, warnings.append, what="X") is None
    assert len(warnings) == 1 and "unknown unit" in warnings[0] and warnings[0].startswith("X")


def test_none_value_stays_none():
    warnings: list[str] = []
    assert convert(None, "Gy", "dose_gy", warnings.append) is None
    assert warnings == []


def test_zero_stays_zero():
    assert convert("0", "Gy.m2", "dap_gy_cm2") == 0.0


@pytest.mark.parametrize(
    "text,expected",
    [("1.5", 1.5), ("1,5", 1.5), ("1.0/2.0", 1.0), ("3\\4", 3.0), ("", None), ("  ", None), ("abc", None),
     ("nan", None), ("inf", None), (None, None), ("-9.3", -9.3), ("6.8e+02", 680.0)],
)
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_unparseable_number_warns():
    warnings: list[str] = []
    assert convert("x1", "Gy", "dose_gy", warnings.append) is None
    assert "unparseable" in warnings[0]


@pytest.mark.parametrize("raw,norm", [("Gy.m2", "gy.m2"), ("Gy*m^2", "gy.m2"), ("µGy·m²", "ugy.m2"),
                                      ("mGy cm", "mgycm"), ("°", "deg")])
def test_norm_unit(raw, norm):
    assert norm_unit(raw) == norm
