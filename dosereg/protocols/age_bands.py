"""Patient age bands: the one definition the protocol audit, the DRL seeds and the study browser share (pure: no
Django, so any app at or above ``dosereg.protocols`` imports it without importing anything else).

Ages are the study's ``patient_age_years`` (the DICOM Patient's Age: "003M" is 0.25 y exactly, "001Y" 1.0, "006Y"
6.0; from the birth date when the age is not sent). A band is [lo, hi): its lower bound belongs to it, its upper
bound to the next band, so a child of exactly 3 months, 1 year or 6 years is in the older band (RP 185: "0 to
<3 months", "3 months to <1 year", "1 to <6 years", "6 years and over"). An age that is missing, negative, NaN or
infinite is *unknown*: it is in no band and is never compared with a band's DRL.

**Age-band families.** Paediatric DRLs are set per age group, and each group is its own standard name
("Paediatric head, 0 to 3 months", ...: the family name, a comma, the band's label). A hospital uses one
protocol ("Paed head") for children of every age, so a protocol name mapped to the family ("Paediatric head") or
to any one of its band names is audited as the family: each study goes to the band of its patient's age, and
each band is compared with its own DRL. A standard name outside every family (an adult name) is never split by
age.

**Summary age classes.** The monthly protocol summaries (``models.ProtocolSummary``) keep one row per *age class*:
the intervals between every family's band bounds (``SUMMARY_EDGES``), plus ``AGE_CLASS_UNKNOWN``. The mapping is
applied when reading, so the classes must not depend on it; a family's band is a union of whole classes.
Changing a band's bounds therefore needs a rebuild of the summaries (a migration that marks every bucket dirty).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

UNKNOWN = "unknown"
UNKNOWN_LABEL = "age unknown"
AGE_CLASS_UNKNOWN = -1


@dataclass(frozen=True)
class AgeBand:
    key: str           # the browser's ``age`` parameter value
    label: str         # as in the standard name ("0 to 3 months")
    lo_years: float    # inclusive
    hi_years: float    # exclusive; math.inf: no upper bound

    def contains(self, age_years: float | None) -> bool:
        return age_years is not None and self.lo_years <= age_years < self.hi_years


def known_age(age_years: float | None) -> bool:
    """A usable age: present, finite and not negative."""
    return age_years is not None and 0 <= age_years < math.inf  # False for NaN too


@dataclass(frozen=True)
class BandFamily:
    name: str                      # the family's own standard name ("Paediatric head")
    modality: str                  # standard-name modality
    bands: tuple[AgeBand, ...]     # contiguous, youngest first

    def band_name(self, band: AgeBand) -> str:
        return f"{self.name}, {band.label}"

    def names(self) -> list[str]:
        """Every standard name of the family: its own and its bands'."""
        return [self.name, *(self.band_name(b) for b in self.bands)]

    def band_of(self, age_years: float | None) -> AgeBand | None:
        """The band of an age (None: age unknown, or outside every band)."""
        if not known_age(age_years):
            return None
        for b in self.bands:
            if b.contains(age_years):
                return b
        return None

    def band(self, key: str) -> AgeBand | None:
        return next((b for b in self.bands if b.key == key), None)


# European DRLs for paediatric imaging (RP 185), head CT by age group
PAED_HEAD_CT = BandFamily("Paediatric head", "CT", (
    AgeBand("0-3m", "0 to 3 months", 0.0, 0.25),
    AgeBand("3m-1y", "3 months to 1 year", 0.25, 1.0),
    AgeBand("1-6y", "1 to 6 years", 1.0, 6.0),
    AgeBand("6y+", "6 years and over", 6.0, math.inf),
))
FAMILIES: tuple[BandFamily, ...] = (PAED_HEAD_CT,)
_BY_NAME: dict[tuple[str, str], BandFamily] = {(f.modality, n): f for f in FAMILIES for n in f.names()}
FAMILY_BY_NAME: dict[str, BandFamily] = {f.name: f for f in FAMILIES}


def family_of(name: str | None, modality: str | None) -> BandFamily | None:
    """The age-band family a standard name (of this standard-name modality) belongs to: the family's own name
    or one of its band names; None for any other name (it is not split by age)."""
    if not name:
        return None
    return _BY_NAME.get(((modality or "").upper(), name))


# ---------------------------------------------------------------------------
# the summaries' age classes
# ---------------------------------------------------------------------------
SUMMARY_EDGES: tuple[float, ...] = tuple(sorted({e for f in FAMILIES for b in f.bands for e in (b.lo_years, b.hi_years)
                                                  if 0 < e < math.inf}))


def age_class(age_years: float | None) -> int:
    """The summary age class of an age: the index of its interval between ``SUMMARY_EDGES`` (0 below the first
    edge), ``AGE_CLASS_UNKNOWN`` for an unknown age. ``age_class_sql`` computes the same in SQL."""
    if age_years is None or not known_age(age_years):
        return AGE_CLASS_UNKNOWN
    return bisect.bisect_right(SUMMARY_EDGES, age_years)


def age_class_sql(column: str, *, postgresql: bool = True) -> str:
    """``age_class`` as an SQL expression of a float column: PostgreSQL (NaN sorts above infinity there, so the
    range test excludes it as Python's comparisons do) or SQLite (the embedded default: no casts, ``9e999`` is its
    infinity, and it stores NaN as NULL)."""
    cast, inf = ("::float8", "'Infinity'::float8") if postgresql else ("", "9e999")
    whens = " ".join(f"WHEN {column} < {edge!r}{cast} THEN {i}" for i, edge in enumerate(SUMMARY_EDGES))
    return (f"(CASE WHEN {column} IS NULL OR NOT ({column} >= 0 AND {column} < {inf}) "
            f"THEN {AGE_CLASS_UNKNOWN} {whens} ELSE {len(SUMMARY_EDGES)} END)")


def class_band(family: BandFamily, cls: int) -> AgeBand | None:
    """The band of ``family`` that holds summary age class ``cls`` (None: unknown)."""
    if cls == AGE_CLASS_UNKNOWN:
        return None
    lo = 0.0 if cls == 0 else SUMMARY_EDGES[cls - 1]  # every age of the class is >= lo and below the next edge
    return family.band_of(lo)


# ---------------------------------------------------------------------------
# the study browser's age filter: the RP 185 age groups used in place of weight for body examinations, adults,
# every family's bands (the audit's drill-down) and "age unknown"
# ---------------------------------------------------------------------------
BROWSER_BANDS: tuple[AgeBand, ...] = (
    AgeBand("0-1", "under 1 y", 0, 1), AgeBand("1-5", "1 to under 5 y", 1, 5),
    AgeBand("5-10", "5 to under 10 y", 5, 10), AgeBand("10-15", "10 to under 15 y", 10, 15),
    AgeBand("15-18", "15 to under 18 y", 15, 18), AgeBand("18+", "adult (18 y and over)", 18, math.inf),
    AgeBand("child", "any child (under 18 y)", 0, 18),
    *(AgeBand(b.key, f"{f.name.lower()} band: {b.label}", b.lo_years, b.hi_years) for f in FAMILIES for b in f.bands),
)
BROWSER_BAND_BY_KEY: dict[str, AgeBand] = {b.key: b for b in BROWSER_BANDS}
