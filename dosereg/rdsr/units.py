"""Unit normalisation for SR numeric values.

Units are matched on the unit *CodeValue* only (the coding scheme designator is ignored
because some devices send "UCM" or "UCUM[1.4]"), case-insensitively, after removing
spaces and harmonising separators (``·``/``*`` -> ``.``, ``^`` dropped, ``µ`` -> ``u``,
``²`` -> ``2``).  Each target quantity has a synonym table of factors to the target
unit.  An unknown unit yields ``None`` plus a warning -- never a wrong number.

Quantities (target unit in the name):

=============  =====================================================
``dap_gy_cm2``  Gy.m2 / Gym2 / dGy.cm2 / cGy.cm2 / mGy.cm2 / uGy.m2 / Gy.cm2 ...
``dose_gy``     Gy, dGy, cGy, mGy, uGy (air kerma, Dose (RP))
``dose_mgy``    same family expressed in mGy (CTDIvol, AGD, SSDE)
``dlp_mgy_cm``  mGy.cm / mGycm / Gy.cm / mGy.mm ...
``time_s``      s, ms, us, min, h
``time_ms``     same family expressed in ms
``kv``          kV, V
``ma``          mA, uA, A
``charge_uas``  uA.s / uAs / mA.s / mAs / A.s
``length_mm``   mm, cm, m, um
``angle_deg``   deg, °, rad
``area_m2``     m2, cm2, mm2
``count``       1, {ratio}, {events}, {pulse}, {X-Ray sources}, no units ...
``rate_per_s``  {pulse}/s, /s, 1/s, Hz
``sar_w_kg``    W/kg, mW/g
``db_dt_t_s``   T/s
``percent``     %
``activity_mbq`` MBq, Bq, kBq, GBq, mCi, uCi (1 mCi = 37 MBq exactly)
``mass_kg``     kg, g
``force_n``     N, daN, kN
``volume_ml``   ml, cm3, l
=============  =====================================================
"""
from __future__ import annotations

import math
from typing import Callable

_TRANS = str.maketrans({"·": ".", "*": ".", "^": None, "µ": "u", "μ": "u", "²": "2", " ": None, "°": "deg"})


def norm_unit(code: str | None) -> str:
    if not code:
        return ""
    return code.translate(_TRANS).lower()


_DAP = {
    "gy.m2": 1e4, "gym2": 1e4, "gy.m.m": 1e4,
    "dgy.cm2": 0.1, "dgycm2": 0.1,
    "cgy.cm2": 1e-2, "cgycm2": 1e-2,
    "mgy.cm2": 1e-3, "mgycm2": 1e-3,
    "ugy.cm2": 1e-6, "ugycm2": 1e-6,
    "ugy.m2": 1e-2, "ugym2": 1e-2,
    "mgy.m2": 10.0, "mgym2": 10.0,
    "cgy.m2": 100.0, "cgym2": 100.0,
    "dgy.m2": 1e3, "dgym2": 1e3,
    "gy.cm2": 1.0, "gycm2": 1.0,
    "gy.dm2": 100.0, "gydm2": 100.0,
}
_DOSE_GY = {"gy": 1.0, "dgy": 0.1, "cgy": 1e-2, "mgy": 1e-3, "ugy": 1e-6, "ngy": 1e-9}
_DLP = {
    "mgy.cm": 1.0, "mgycm": 1.0, "mgy.cm1": 1.0,
    "gy.cm": 1e3, "gycm": 1e3,
    "mgy.mm": 0.1, "mgymm": 0.1,
    "mgy.m": 100.0, "mgym": 100.0,
    "ugy.cm": 1e-3, "ugycm": 1e-3,
    "cgy.cm": 10.0, "cgycm": 10.0,
    "dgy.cm": 100.0, "dgycm": 100.0,
}
_TIME_S = {
    "s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3, "msec": 1e-3,
    "us": 1e-6,
    "min": 60.0, "mins": 60.0, "minute": 60.0,
    "h": 3600.0, "hr": 3600.0,
}
_KV = {"kv": 1.0, "kvp": 1.0, "v": 1e-3}
_MA = {"ma": 1.0, "ua": 1e-3, "a": 1e3}
_CHARGE = {
    "ua.s": 1.0, "uas": 1.0,
    "ma.s": 1e3, "mas": 1e3,
    "a.s": 1e6, "as": 1e6,
    "c": 1e6, "mc": 1e3, "uc": 1.0,
}
_LENGTH = {"mm": 1.0, "cm": 10.0, "m": 1e3, "um": 1e-3, "dm": 100.0}
_ANGLE = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "rad": 180.0 / math.pi}
_AREA = {"m2": 1.0, "cm2": 1e-4, "mm2": 1e-6, "dm2": 1e-2}
_COUNT = {
    "1": 1.0, "": 1.0, "nounits": 1.0, "{ratio}": 1.0, "ratio": 1.0, "{events}": 1.0, "events": 1.0,
    "{pulse}": 1.0, "{pulses}": 1.0, "pulse": 1.0, "pulses": 1.0, "{x-raysources}": 1.0,
    "x-raysources": 1.0, "{frames}": 1.0, "{images}": 1.0, "{exposures}": 1.0,
}
_RATE = {"{pulse}/s": 1.0, "/s": 1.0, "1/s": 1.0, "hz": 1.0, "pulse/s": 1.0, "{pulses}/s": 1.0,
         "{frames}/s": 1.0, "{frame}/s": 1.0, "s-1": 1.0}
_SAR = {"w/kg": 1.0, "mw/g": 1.0, "w.kg-1": 1.0}
_DBDT = {"t/s": 1.0, "t.s-1": 1.0}
_PERCENT = {"%": 1.0, "percent": 1.0}
_ACTIVITY = {"mbq": 1.0, "bq": 1e-6, "kbq": 1e-3, "gbq": 1e3, "mci": 37.0, "uci": 0.037, "ci": 37000.0}
_MASS = {"kg": 1.0, "g": 1e-3}
_FORCE = {"n": 1.0, "dan": 10.0, "kn": 1e3}
_VOLUME = {"ml": 1.0, "cm3": 1.0, "l": 1e3, "ul": 1e-3}

TABLES: dict[str, dict[str, float]] = {
    "dap_gy_cm2": _DAP,
    "dose_gy": _DOSE_GY,
    "dose_mgy": {k: v * 1e3 for k, v in _DOSE_GY.items()},
    "dlp_mgy_cm": _DLP,
    "time_s": _TIME_S,
    "time_ms": {k: v * 1e3 for k, v in _TIME_S.items()},
    "kv": _KV,
    "ma": _MA,
    "charge_uas": _CHARGE,
    "length_mm": _LENGTH,
    "angle_deg": _ANGLE,
    "area_m2": _AREA,
    "count": _COUNT,
    "rate_per_s": _RATE,
    "sar_w_kg": _SAR,
    "db_dt_t_s": _DBDT,
    "percent": _PERCENT,
    "activity_mbq": _ACTIVITY,
    "mass_kg": _MASS,
    "force_n": _FORCE,
    "volume_ml": _VOLUME,
}

# quantities for which a missing unit is acceptable (dimensionless)
_UNITLESS_OK = {"count"}


class UnitError(ValueError):
    pass


def factor(unit_code: str | None, quantity: str) -> float | None:
    """Multiplicative factor from ``unit_code`` to the target unit of ``quantity``, or None."""
    table = TABLES[quantity]
    key = norm_unit(unit_code)
    if not key and quantity not in _UNITLESS_OK:
        return None
    f = table.get(key)
    if f is None and quantity == "count" and key.startswith("{") and key.endswith("}"):
        return 1.0  # any UCUM annotation is dimensionless
    return f


def parse_number(text: str | None) -> float | None:
    """Parse a DS-like string tolerantly; None if empty or not a finite number.

    Accepts a decimal comma and takes the first value of an (illegally) multi-valued
    string ("/" or "\\" separated).
    """
    if text is None:
        return None
    s = text.strip()
    if not s:
        return None
    for sep in ("\\", "/"):
        if sep in s:
            s = s.split(sep, 1)[0].strip()
    try:
        v = float(s)
    except ValueError:
        try:
            v = float(s.replace(",", "."))
        except ValueError:
            return None
    if math.isnan(v) or math.isinf(v):
        return None
    return v


def convert(value: float | str | None, unit_code: str | None, quantity: str,
            warn: Callable[[str], None] | None = None, what: str = "value") -> float | None:
    """Convert ``value`` expressed in ``unit_code`` into the target unit of ``quantity``.

    Returns None (and calls ``warn``) when the unit is unknown for that quantity.
    """
    if value is None:
        return None
    if isinstance(value, str):
        v = parse_number(value)
        if v is None:
            if warn:
                warn(f"{what}: unparseable number {value!r}; stored as null")
            return None
    else:
        v = float(value)
    f = factor(unit_code, quantity)
    if f is None:
        if warn:
            warn(f"{what}: unknown unit {unit_code!r} for {quantity}; stored as null")
        return None
    return v * f
