"""Age bands (dosereg.protocols.age_bands): band assignment at the RP 185 head CT boundaries, unknown ages, the
families' names, and the summaries' age classes agreeing with the SQL the audit reads them with."""
from __future__ import annotations

import math

import pytest

from dosereg.protocols import age_bands as A
from dosereg.rdsr.extract_context import parse_age

HEAD = A.PAED_HEAD_CT


@pytest.mark.parametrize("age_years, band", [
    (0.0, "0-3m"),
    (0.2499, "0-3m"),
    (parse_age("012W"), "0-3m"),     # 84 days
    (parse_age("002M"), "0-3m"),
    (0.25, "3m-1y"),                 # exactly 3 months: the older band
    (parse_age("003M"), "3m-1y"),
    (0.9999, "3m-1y"),
    (parse_age("011M"), "3m-1y"),
    (1.0, "1-6y"),                   # exactly 1 year
    (parse_age("001Y"), "1-6y"),
    (parse_age("012M"), "1-6y"),
    (5.99, "1-6y"),
    (6.0, "6y+"),                    # exactly 6 years
    (parse_age("006Y"), "6y+"),
    (17.5, "6y+"),
])
def test_band_boundaries(age_years, band):
    got = HEAD.band_of(age_years)
    assert got is not None and got.key == band
    assert A.class_band(HEAD, A.age_class(age_years)) == got  # the summaries' class lands in the same band
    assert got.contains(age_years) and sum(b.contains(age_years) for b in HEAD.bands) == 1


@pytest.mark.parametrize("age_years", [None, -0.01, -5.0, math.nan, math.inf, -math.inf])
def test_unknown_age_is_in_no_band(age_years):
    assert HEAD.band_of(age_years) is None
    assert A.age_class(age_years) == A.AGE_CLASS_UNKNOWN
    assert A.class_band(HEAD, A.AGE_CLASS_UNKNOWN) is None
    assert not any(b.contains(age_years) for b in HEAD.bands)


def test_family_names():
    assert A.family_of("Paediatric head", "CT") is HEAD
    for b in HEAD.bands:
        assert A.family_of(HEAD.band_name(b), "CT") is HEAD
    assert HEAD.band_name(HEAD.bands[0]) == "Paediatric head, 0 to 3 months"
    assert HEAD.band_name(HEAD.bands[-1]) == "Paediatric head, 6 years and over"
    # an adult name, another modality's name of the same text, a near miss: never a family (never split by age)
    for name, modality in [("Head", "CT"), ("Paediatric head", "DX"), ("Paediatric head, 2 to 5 years", "CT"),
                           ("", "CT"), (None, None)]:
        assert A.family_of(name, modality) is None
    # the bands tile [0, infinity) without a gap
    assert HEAD.bands[0].lo_years == 0 and HEAD.bands[-1].hi_years == math.inf
    assert all(a.hi_years == b.lo_years for a, b in zip(HEAD.bands, HEAD.bands[1:]))


def test_drl_seed_names_are_the_family_band_names():
    from dosereg.protocols.drl_seeds import PAED_CT

    assert {r["name"] for r in PAED_CT["rows"]} == {HEAD.band_name(b) for b in HEAD.bands}


def test_browser_bands_share_the_definition():
    from dosereg.web import browse

    for b in HEAD.bands:
        assert browse.AGE_BANDS[b.key] == (b.lo_years, b.hi_years)
    assert A.UNKNOWN in browse.AGE_BAND_LABELS
    assert browse.AGE_BANDS["0-1"] == (0, 1) and browse.AGE_BANDS["18+"] == (18, math.inf)


AGES = [None, -1.0, 0.0, 0.1, 0.2499, 0.25, 0.5, 0.9999, 1.0, 3.0, 5.9999, 6.0, 10.0, 45.0, math.nan, math.inf]


@pytest.mark.django_db
def test_sql_age_class_agrees_with_python():
    from django.db import connection

    # on PostgreSQL and on SQLite (the embedded default, whose protocol audit reads the same expression)
    pg = connection.vendor == "postgresql"
    rows = " UNION ALL ".join(f"SELECT {i} AS i, %s{'::float8' if pg else ''} AS a" for i in range(len(AGES)))
    with connection.cursor() as c:
        c.execute(f"SELECT {A.age_class_sql('v.a', postgresql=pg)} FROM ({rows}) v ORDER BY v.i", AGES)
        got = [r[0] for r in c.fetchall()]
    assert got == [A.age_class(a) for a in AGES]
