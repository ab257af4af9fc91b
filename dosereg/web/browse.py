"""The study browser (``/studies/``): filters read from the query string, one sorted and paged queryset, and the
export rows of exactly the filtered set (issue 17 part 1).

Query count (asserted in the tests), whatever the page size or the number of studies:

* ``study_page``: 2 (the true count, with the rows before a keyset cursor; the page rows with their device and
  patient), 3 only when a cursor names a study that is gone or not the user's (then the first page is shown).

Paging: next / previous / last are keyset seeks (``after`` / ``before`` a study id, ``end``), as fast on page 2,000
as on page 1; a page number ("go to page") is an OFFSET over ids only, read from the nearer end. The standard name
is the study's stored copy (``Study.standard_name``, kept by ``dosereg.protocols.services``), so sorting by it reads
an index. The sorts by the device's site or name or the patient's sex go on by device and then newest first, and
PostgreSQL reads them one key value at a time from the (device, date) and date indexes (``browse_groups``).
* ``filter_options``: 2 (the devices at the user's sites, which also give the site names; the standard names).

Site scope is the one of every clinical page (``SiteScope.study_q``, a subquery, no query of its own). Numbers
stay in their stored unit (the unit is in the parameter and column names); pages format them through
``dosereg.formatting`` (template filters), the exports through ``formatting.machine``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (BooleanField, Case, CharField, Count, Exists, F, Func, Max, OuterRef, Q, Subquery, TextField,
                              Value, When)
from django.db.models.functions import Cast, Lower, Trim
from django.db.models.lookups import Exact, GreaterThan, IsNull, LessThan
from django.utils import timezone

from dosereg.access.scope import EVERY_SITE, SiteScope, normalise
from dosereg.protocols import age_bands
from dosereg.protocols.models import ProtocolMapping, StandardName
from dosereg.registry.models import Device, IrradiationEvent, Study

from . import browse_groups
from .params import InvalidParameter, PageNumbers, QueryParams, SortChoice, clean_text

MODALITIES = ("CT", "RF", "XA", "DX", "CR", "MG", "NM", "PT", "MR", "OT")
PROJECTION_MODALITIES = ("RF", "XA", "DX", "CR", "MG")
SEXES = {"F": "female", "M": "male", "O": "other", "U": "not recorded"}
# age bands (the one definition, ``dosereg.protocols.age_bands``): the RP 185 age groups, adults, the paediatric
# DRL families' bands (the protocol audit's band rows drill down to them) and "age unknown"; upper bounds exclusive
AGE_BANDS = {b.key: (b.lo_years, b.hi_years) for b in age_bands.BROWSER_BANDS}
AGE_BAND_LABELS = {**{b.key: b.label for b in age_bands.BROWSER_BANDS}, age_bands.UNKNOWN: age_bands.UNKNOWN_LABEL}
NOT_PATIENT = {"all": "all studies", "exclude": "patients only", "only": "not a patient only"}
# data-quality flags set at ingest (Study.flags: the warnings that make a study's stored values doubtful)
FLAGGED = {"": "all studies", "dose": "dose unreadable", "any": "any flag"}
# how the ingest words a dose value it could not read (dosereg.rdsr.extract: ``ctx.flag``)
DOSE_UNREADABLE_MARKERS = ("unreadable dose value", "where NUM is expected")


def flagged_studies(qs, kind: str):
    """``qs`` narrowed to the studies with data-quality flags: ``dose`` those whose dose values could not be
    read, ``any`` every flagged study (a date out of range or invalid, a patient name that differs, a re-filed
    report...)."""
    if kind == "any":
        return qs.exclude(flags=[])
    if kind == "dose":
        cond = Q()
        for marker in DOSE_UNREADABLE_MARKERS:
            cond |= Q(_flags_text__icontains=marker)
        return qs.exclude(flags=[]).alias(_flags_text=Cast("flags", TextField())).filter(cond)
    return qs


def dose_flags(flags: list) -> list[str]:
    """The flags of a study that say a dose value could not be read."""
    return [f for f in flags or [] if any(m in f for m in DOSE_UNREADABLE_MARKERS)]
PAGE_SIZES = (10, 25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50

# dose range filters: parameter stem -> (study field, label, unit); the unit is in the name
DOSE_RANGES = {
    "kap_gy_cm2": ("dap_total_gy_cm2", "KAP", "Gy·cm²"),
    "kar_gy": ("dose_rp_max_plane_gy", "Ka,r", "Gy"),
    "dlp_mgy_cm": ("dlp_total_mgy_cm", "DLP", "mGy·cm"),
    "ctdivol_mgy": ("ctdivol_max_mgy", "CTDIvol", "mGy"),
    "fluoro_time_s": ("fluoro_time_total_s", "Fluoro time", "s"),
}

# the sort key of patient sex: the study's copy of its patient record's sex (Study.patient_sex), NULL for a study
# without a patient (so that those come after the patients whose sex is not recorded, as the empty values of a key)
SEX_KEY = Case(When(patient__isnull=True, then=Value(None)), default=F("patient_sex"), output_field=CharField())

# sortable columns: key -> (order expression, heading); every ordering ends with pk (stable pages)
SORTS: dict[str, tuple[Any, str]] = {
    "date": (F("study_datetime"), "Date"),
    "modality": (F("procedure_modality"), "Modality"),
    "site": (Lower("device__institution"), "Site"),
    "device": (Lower("device__display_name"), "Device"),
    "description": (Lower("study_description"), "Study description"),
    "standard": (Lower("standard_name"), "Standard name"),
    "age": (F("patient_age_years"), "Age"),
    "sex": (SEX_KEY, "Sex"),
    "kap": (F("dap_total_gy_cm2"), "KAP"),
    "kar": (F("dose_rp_max_plane_gy"), "Ka,r"),
    "fluoro": (F("fluoro_time_total_s"), "Fluoro time"),
    "ctdivol": (F("ctdivol_max_mgy"), "CTDIvol"),
    "dlp": (F("dlp_total_mgy_cm"), "DLP"),
    "events": (F("event_count"), "Events"),
}
DEFAULT_SORT = "-date"


def parse_number(value: str | None, name: str) -> float | None:
    """A finite, non-negative decimal number (a dose bound); ``,`` accepted as the decimal mark."""
    value = clean_text(value, max_length=40).replace(",", ".")
    if not value:
        return None
    if not re.fullmatch(r"[0-9]{0,15}(\.[0-9]{0,15})?", value) or value == ".":
        raise InvalidParameter(name, f"{value[:20]!r} is not a non-negative number")
    n = float(value)
    if not math.isfinite(n):
        raise InvalidParameter(name, f"{value[:20]!r} is not a finite number")
    return n


@dataclass
class StudyFilters(SortChoice):
    modality: str = ""
    site: str = ""              # an institution name (compared trimmed, case-insensitively)
    device: int | None = None   # Device pk; 0: studies without a device
    since: date | None = None   # inclusive day
    until: date | None = None   # inclusive day
    protocol: str = ""          # text in the study description or an event's protocol name
    standard: int | None = None  # StandardName pk; 0: unmapped
    family: str = ""            # an age-band family (age_bands.FAMILIES): studies mapped to any of its names
    description: str | None = None  # the vendor study description, exact ("" : blank); None: any
    ionising: bool = False      # only studies with an ionising dose (as the protocol audit counts them)
    reported: str = ""          # a DOSE_RANGES stem: only studies that report that quantity
    age_band: str = ""
    sex: str = ""
    not_patient: str = "all"
    flagged: str = ""           # FLAGGED: "dose" / "any"
    ranges: dict = field(default_factory=dict)  # stem -> (min, max), either may be None
    sort: str = DEFAULT_SORT
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    # keyset paging (see ``study_page``): the page after / before the study of this id in the sort order, or the
    # last page (``end``); each costs what the first page costs, however deep. ``page`` (a number) is the jump.
    after: int | None = None
    before: int | None = None
    end: bool = False
    errors: dict = field(default_factory=dict)


def read_filters(query, *, strict: bool = False) -> StudyFilters:
    """The browser's filters from a query string (pages: an invalid one is ignored and named in ``errors``;
    ``strict`` (exports): ``InvalidParameter``)."""
    p = QueryParams(query, strict=strict)
    f = StudyFilters()
    f.modality = p.choice("modality", set(MODALITIES)) or ""
    f.site = p.text("site", max_length=256)
    f.device = p.int("device", min_value=0)
    f.since, f.until = p.date("since"), p.date("until")
    f.protocol = p.text("protocol", max_length=256)
    f.standard = p.int("standard", min_value=0)
    if "description" in query:  # present, even blank: the exact vendor description (the audit's unmapped rows)
        f.description = (query.get("description") or "").replace("\x00", "")[:256]
    f.ionising = p.choice("ionising", {"1"}) == "1"
    f.reported = p.choice("reported", set(DOSE_RANGES)) or ""
    f.family = p.choice("family", set(age_bands.FAMILY_BY_NAME)) or ""
    f.age_band = p.choice("age", set(AGE_BAND_LABELS)) or ""
    f.sex = p.choice("sex", set(SEXES)) or ""
    f.not_patient = p.choice("not_patient", set(NOT_PATIENT)) or "all"
    f.flagged = p.choice("flagged", set(FLAGGED) - {""}) or ""
    for stem in DOSE_RANGES:
        lo, hi = p._read(parse_number, f"{stem}_min"), p._read(parse_number, f"{stem}_max")
        if lo is not None or hi is not None:
            f.ranges[stem] = (lo, hi)
    sort = p.text("sort", max_length=32)
    if sort:
        if sort.lstrip("-") in SORTS:
            f.sort = sort
        elif strict:
            raise InvalidParameter("sort", f"{sort[:20]!r} is not a column")
        else:
            p.errors["sort"] = f"{sort[:20]!r} is not a column"
    f.page = p.int("page", max_value=10**9) or 1
    f.after, f.before = p.int("after"), p.int("before")
    f.end = p.choice("end", {"1"}) == "1"
    size = p.int("per_page", max_value=10**6)
    if size is not None:
        if size in PAGE_SIZES:
            f.page_size = size
        else:
            p.errors["per_page"] = f"{size} is not one of {', '.join(map(str, PAGE_SIZES))}"
    f.errors = p.errors
    return f


def filtered_studies(f: StudyFilters, *, scope: SiteScope = EVERY_SITE):
    """The studies of ``f`` at the sites of ``scope`` (a lazy queryset, unordered)."""
    qs = Study.objects.filter(scope.study_q())
    if not scope.unrestricted and not scope.sites:
        return qs.none()
    if f.modality:
        qs = qs.filter(procedure_modality=f.modality)
    if f.site:
        qs = qs.alias(_site=Lower(Trim("device__institution"))).filter(_site=normalise(f.site))
    if f.device == 0:
        qs = qs.filter(device__isnull=True)
    elif f.device:
        qs = qs.filter(device_id=f.device)
    tz = timezone.get_current_timezone()
    if f.since:
        qs = qs.filter(study_datetime__gte=datetime.combine(f.since, time.min, tzinfo=tz))
    if f.until:
        qs = qs.filter(study_datetime__lt=datetime.combine(f.until, time.min, tzinfo=tz) + timedelta(days=1))
    if f.protocol:
        qs = qs.filter(Q(study_description__icontains=f.protocol) | Q(protocol_names__icontains=f.protocol))
    if f.standard == 0:
        # unmapped: the study's stored standard name (dosereg.protocols keeps it: set by the pipeline's protocols
        # step and in the transaction of every mapping edit) is NULL; read from its partial index
        qs = qs.filter(standard_name__isnull=True)
    elif f.standard is not None:
        mapped = ProtocolMapping.objects.filter(source_name=OuterRef("study_description"),
                                                modality=OuterRef("procedure_modality"))
        qs = qs.filter(Exists(mapped.filter(standard_name_id=f.standard)))
    if f.family:
        fam = age_bands.FAMILY_BY_NAME[f.family]
        qs = qs.filter(Exists(ProtocolMapping.objects.filter(
            source_name=OuterRef("study_description"), modality=OuterRef("procedure_modality"),
            standard_name__modality=fam.modality, standard_name__name__in=fam.names())))
    if f.description is not None:
        qs = qs.filter(study_description=f.description)
    if f.ionising:
        qs = qs.filter(has_ionising_dose=True)
    if f.reported:
        qs = qs.filter(**{f"{DOSE_RANGES[f.reported][0]}__isnull": False})
    if f.age_band == age_bands.UNKNOWN:  # as age_bands.known_age: missing, negative, NaN or infinite
        qs = qs.filter(Q(patient_age_years__isnull=True) | Q(patient_age_years__lt=0)
                       | Q(patient_age_years__gte=math.inf))  # PostgreSQL: NaN >= infinity
    elif f.age_band:
        lo, hi = AGE_BANDS[f.age_band]
        qs = qs.filter(patient_age_years__gte=lo, patient_age_years__lt=hi)
    if f.sex:  # the study's copy of its patient record's sex ("" also for a study without a patient)
        qs = qs.filter(patient_sex="" if f.sex == "U" else f.sex)
    if f.not_patient == "exclude":
        qs = qs.filter(not_patient_reason="")
    elif f.not_patient == "only":
        qs = qs.exclude(not_patient_reason="")
    if f.flagged:
        qs = flagged_studies(qs, f.flagged)
    for stem, (lo, hi) in f.ranges.items():
        col = DOSE_RANGES[stem][0]
        if lo is not None:
            qs = qs.filter(**{f"{col}__gte": lo})
        if hi is not None:
            qs = qs.filter(**{f"{col}__lte": hi})
    return qs


# sort keys whose column is NOT NULL: ordered without a NULLS clause, so that one ascending index (migration
# 0013, 0016) serves both directions, read backwards for descending (an index per direction is one more index for
# every ingested study to update; with no NULLs, "NULLS LAST" and the plain order are the same rows)
NOT_NULL_SORTS = frozenset({"description", "modality"})


# sorts by a column of the study's device or patient (issue 17): within one value the studies follow by device (a
# site: its devices by name, then id) and then newest first, the order in which PostgreSQL reads them from the
# (device, date) and date indexes one value at a time (``browse_groups``) instead of sorting every study
JOINED_SORTS: dict[str, list] = {
    "site": [Lower("device__institution"), Lower("device__display_name"), F("device_id")],
    "device": [Lower("device__display_name"), F("device_id")],
    "sex": [SEX_KEY],
}
WITHIN_GROUP = [(F("study_datetime"), True), (F("pk"), True)]  # newest first, then the id


def order_terms(f: StudyFilters) -> list[tuple[Any, bool]]:
    """A joined sort's whole order as (expression, descending) terms, empty values last in each: the key in the
    asked direction, the device's name and id, then newest first."""
    first, *rest = JOINED_SORTS[f.sort_key]
    return [(first, f.descending)] + [(e, False) for e in rest] + WITHIN_GROUP


def ordered(qs, f: StudyFilters, *, reverse: bool = False):
    """``qs`` in the browser's order for ``f`` (empty values last, the id as tie-break), or exactly backwards."""
    if f.sort_key in JOINED_SORTS:
        if reverse:
            return qs.order_by(*[e.asc(nulls_first=True) if d else e.desc(nulls_first=True) for e, d in order_terms(f)])
        return qs.order_by(*[e.desc(nulls_last=True) if d else e.asc(nulls_last=True) for e, d in order_terms(f)])
    expr, _ = SORTS[f.sort_key]
    desc = f.descending != reverse
    if f.sort_key in NOT_NULL_SORTS:
        return qs.order_by(expr.desc() if desc else expr.asc(), "-pk" if desc else "pk")
    if reverse:  # backwards: empty values first, so that an index in the forward order is read backwards
        return qs.order_by(expr.desc(nulls_first=True) if desc else expr.asc(nulls_first=True), "-pk" if desc else "pk")
    return qs.order_by(f.order(expr), "-pk" if desc else "pk")


class RowCompare(Func):
    """``(a, b) < (c, d)``: a row-value comparison, which PostgreSQL answers from a btree index on ``(a, b)`` as
    one index condition (the OR of column comparisons it stands for would be a filter over every earlier row)."""

    output_field = BooleanField()

    def __init__(self, op: str, left: list, right: list):
        if op not in ("<", ">") or len(left) != len(right):
            raise ValueError(op)
        self.op, self.width = op, len(left)
        super().__init__(*left, *right)

    def as_sql(self, compiler, connection, **extra_context):  # type: ignore[override]
        parts, params = [], []
        for e in self.get_source_expressions():
            sql, p = compiler.compile(e)
            parts.append(sql)
            params.extend(p)
        left, right = ", ".join(parts[:self.width]), ", ".join(parts[self.width:])
        return f"({left}) {self.op} ({right})", params


def _cursor_row(cursor: int, scope: SiteScope):
    """The cursor study with its sort key (``_k``), only if the user may see it (a cursor outside the user's
    sites compares as nothing: its values are never revealed by where a page starts)."""
    return Study.objects.filter(scope.study_q(), pk=cursor)


def _keyset(qs, f: StudyFilters, cursor: int, *, forward: bool, scope: SiteScope = EVERY_SITE):
    """The ids of at most one page of ``qs`` right after (``forward``) or right before the study ``cursor`` in
    the order of ``f``, as one subquery: a UNION ALL of index seeks, each ordered and limited, so the cost does
    not depend on how deep the cursor is.

    The order is the sort key's values ``(k, id)`` followed by the studies without a value (``k`` NULL, by id).
    The cursor's key is read by a sub-select (an InitPlan: one index probe); where the cursor has no value (it is
    among the NULLs), the branches for a valued cursor are empty and the others apply, and vice versa (the
    conditions on the cursor alone are evaluated once, before any row is read)."""
    n = f.page_size
    if f.sort_key in JOINED_SORTS:
        if walks_groups(f):
            return browse_groups.group_walk_ids(qs, f, scope=scope, reverse=not forward, limit=n, cursor=cursor)
        beyond = _beyond_cursor(f, cursor, scope, after=forward)
        return ordered(qs.filter(beyond), f, reverse=not forward).values("pk")[:n]
    expr, _ = SORTS[f.sort_key]
    base = qs.alias(_k=expr)
    cursor_row = _cursor_row(cursor, scope).alias(_k=expr)
    v = Subquery(_cursor_row(cursor, scope).annotate(_k=expr).values("_k")[:1])
    cursor_null = Exists(cursor_row.filter(_k__isnull=True))
    cursor_valued = Exists(cursor_row.filter(_k__isnull=False))
    later = "<" if f.descending else ">"      # the comparison of rows after a cursor in the page order
    earlier = ">" if f.descending else "<"
    id_later = Q(pk__lt=cursor) if f.descending else Q(pk__gt=cursor)
    id_earlier = Q(pk__gt=cursor) if f.descending else Q(pk__lt=cursor)
    if forward:
        branches = [
            base.filter(RowCompare(later, [F("_k"), F("pk")], [v, Value(cursor)])),  # the valued rows after it
            base.filter(cursor_valued, _k__isnull=True),                             # then every empty one
            base.filter(id_later, _k__isnull=True),                                  # (cursor empty) the empty after it
        ]
        parts = [ordered(b, f) for b in branches]
    else:
        branches = [
            base.filter(RowCompare(earlier, [F("_k"), F("pk")], [v, Value(cursor)])),  # the valued rows before it
            base.filter(cursor_null, _k__isnull=False),                                 # (cursor empty) every valued
            base.filter(cursor_null, id_earlier, _k__isnull=True),                      # and the empty before it
        ]
        parts = [ordered(b, f, reverse=True) for b in branches]
    if connection.vendor != "postgresql":
        # SQLite (the embedded default, small registries) allows no LIMIT inside a compound statement: the same
        # rows as one ordered, limited query over the OR of the branches
        either = Q()
        for b in branches:
            either |= Q(pk__in=b.values("pk"))
        return ordered(base.filter(either), f, reverse=not forward).values("pk")[:n]
    first, *rest = [p.values("pk")[:n] for p in parts]
    return first.union(*rest, all=True)


def _lex(terms: list[tuple[Any, bool]], row, *, after: bool) -> Q:
    """The rows after (``after``) or before the one row of the queryset ``row`` in the order of ``terms``
    ((expression, descending), empty values last in each): equal so far, then further or nearer in one term."""
    cond, same = Q(), Q()
    for expr, desc in terms:
        v = Subquery(row.annotate(_k=expr).values("_k")[:1])
        e_null, v_null = Q(IsNull(expr, True)), Q(IsNull(v, True))
        if after:   # v has a value, and e none or one further in the order
            step = Q(IsNull(v, False)) & (e_null | Q(LessThan(expr, v) if desc else GreaterThan(expr, v)))
        else:       # e has a value, and v none or e nearer the start
            step = Q(IsNull(expr, False)) & (v_null | Q(GreaterThan(expr, v) if desc else LessThan(expr, v)))
        cond |= same & step
        same &= Q(Exact(expr, v)) | e_null & v_null
    return cond


def _beyond_cursor(f: StudyFilters, cursor: int, scope: SiteScope, *, after: bool, by_date: bool = False) -> Q:
    """A joined sort: the studies after (``after``) or before the study ``cursor`` in the order of ``f``, nothing
    when the cursor is not the user's to see. A filter read in a scan (the count's row numbers; keyset pages on
    SQLite or with row filters), so it compares groups by id: the studies of the devices (patients) whose group
    is further or nearer (a hashed list of a few dozen devices, or of the patients of some sexes), then within
    the cursor's group by date and id."""
    row = _cursor_row(cursor, scope)
    # ``by_date``: within the cursor's group, only the dates (the studies of the cursor's date are left out: counted
    # apart, ``_cursor_date_ties``), so that a count reads only the (device, date) or (patient, date) index
    within = _lex(WITHIN_GROUP[:1] if by_date else WITHIN_GROUP, row, after=after)
    if f.sort_key == "sex":  # the study's copy of its patient's sex (Study.patient_sex), on the (sex, date) index
        c_sex = Subquery(row.values("patient_sex")[:1])
        has_group = Exists(row.filter(patient__isnull=False))
        smaller = f.descending == after  # the sexes after the cursor's are the smaller ones when descending
        null_q, not_null_q = Q(patient__isnull=True), Q(patient__isnull=False)
        valued_beyond = not_null_q & Q(LessThan(F("patient_sex"), c_sex) if smaller else GreaterThan(F("patient_sex"), c_sex))
        valued_same = not_null_q & Q(Exact(F("patient_sex"), c_sex))
    else:
        dev_terms = [(Lower("institution"), f.descending), (Lower("display_name"), False), (F("pk"), False)] \
            if f.sort_key == "site" else [(Lower("display_name"), f.descending), (F("pk"), False)]
        c_dev = Device.objects.filter(pk=Subquery(row.values("device_id")[:1]))
        has_group = Exists(row.filter(device__isnull=False))
        valued_beyond = Q(device_id__in=Device.objects.filter(_lex(dev_terms, c_dev, after=after)).values("pk"))
        valued_same = Q(device_id=Subquery(row.values("device_id")[:1]))
        null_q, not_null_q = Q(device__isnull=True), Q(device__isnull=False)
    # the group without a device / patient comes last
    if after:
        valued = Q(has_group) & (valued_beyond | null_q | valued_same & within)
        empty = ~Q(has_group) & null_q & within
    else:
        valued = Q(has_group) & (valued_beyond | valued_same & within)
        empty = ~Q(has_group) & (not_null_q | null_q & within)
    return (valued | empty) & Q(Exists(row))


def _cursor_date_ties(qs, f: StudyFilters, cursor: int, scope: SiteScope, *, with_cursor: bool) -> Subquery:
    """How many studies of ``qs`` share the cursor's group and date (or both have none) and come before it by id
    (``with_cursor``: the cursor too), as a scalar sub-select (evaluated once)."""
    row = _cursor_row(cursor, scope)
    c_dt = Subquery(row.values("study_datetime")[:1])
    if f.sort_key == "sex":
        same = Q(patient__isnull=False) & Q(Exact(F("patient_sex"), Subquery(row.values("patient_sex")[:1]))) \
            & Q(Exists(row.filter(patient__isnull=False))) \
            | Q(patient__isnull=True) & Q(Exists(row.filter(patient__isnull=True)))
    else:
        same = Q(device_id=Subquery(row.values("device_id")[:1])) \
            | Q(device__isnull=True) & Q(Exists(row.filter(device__isnull=True)))
    date = Q(study_datetime=c_dt) | Q(study_datetime__isnull=True) & Q(IsNull(c_dt, True))
    ties = qs.filter(same, date, Q(pk__gte=cursor) if with_cursor else Q(pk__gt=cursor), Exists(row))
    return Subquery(_count_of(ties))


def _before_parts(f: StudyFilters, cursor: int, scope: SiteScope) -> list[Q]:
    """A sort by a column of the study: the studies before the study ``cursor`` as disjoint conditions, each a
    range of the sort's index: the valued rows before a valued cursor; for a cursor without a value (its
    condition evaluated once), every valued row, and the empty rows before it by id."""
    expr, _ = SORTS[f.sort_key]
    v = Subquery(_cursor_row(cursor, scope).annotate(_k=expr).values("_k")[:1])
    cursor_null = Q(Exists(_cursor_row(cursor, scope).alias(_k=expr).filter(_k__isnull=True)))
    earlier = ">" if f.descending else "<"
    id_earlier = Q(pk__gt=cursor) if f.descending else Q(pk__lt=cursor)
    return [Q(RowCompare(earlier, [expr, F("pk")], [v, Value(cursor)])),
            cursor_null & Q(IsNull(expr, False)),
            cursor_null & id_earlier & Q(IsNull(expr, True))]


def _before_cursor(f: StudyFilters, cursor: int, scope: SiteScope = EVERY_SITE) -> Q:
    """The studies that come before the study ``cursor`` in the order of ``f`` (for the page's row numbers)."""
    if f.sort_key in JOINED_SORTS:
        return _beyond_cursor(f, cursor, scope, after=False)
    either = Q()
    for part in _before_parts(f, cursor, scope):
        either |= part
    return either


def _count_of(q):
    """``q``'s row count as a one-column queryset (a scalar sub-select, or a statement's part)."""
    return q.order_by().annotate(_n=Func(F("pk"), function="COUNT")).values("_n")


def _keyset_counts(qs, f: StudyFilters, cursor: int, scope: SiteScope) -> tuple[int, int]:
    """PostgreSQL, a sort by a column of the study: the true count and the rows before a keyset cursor (the page's
    row numbers; the cursor too for ``after``), in one statement of separate counts, one per part of
    ``_before_parts``, each a range of the sort's index (an index-only scan: the standard-name indexes include the
    column) rather than the sort key computed for every study in one scan (``LOWER(standard_name)`` of 100,000
    studies: 48 ms)."""
    before = [qs.filter(part) for part in _before_parts(f, cursor, scope)]
    if f.after is not None:
        before.append(qs.filter(pk=cursor))
    try:
        total, *parts = [_count_of(q).query.sql_with_params() for q in [qs, *before]]
    except EmptyResultSet:  # a filter that matches nothing (a scope without a site)
        return 0, 0
    sql = f"SELECT ({total[0]}), " + " + ".join(f"({s})" for s, _ in parts)
    with connection.cursor() as c:
        c.execute(sql, [*total[1], *(p for _, ps in parts for p in ps)])
        count, n_before = c.fetchone()
    return count, n_before


PAGE_FIELDS = (
    "pk", "study_datetime", "procedure_modality", "study_description", "standard_name", "accession_number",
    "patient_age_years", "dap_total_gy_cm2", "dose_rp_max_plane_gy", "fluoro_time_total_s", "ctdivol_max_mgy",
    "dlp_total_mgy_cm", "event_count", "not_patient_reason", "has_ionising_dose", "patient_id", "device_id", "flags",
    "device__display_name", "device__manufacturer", "device__model", "device__station_name", "device__institution",
    "patient__patient_id", "patient__sex",
)


@dataclass
class StudyPage(PageNumbers):
    rows: list
    count: int
    page: int
    pages: int
    page_size: int
    start: int = 0          # rows before this page (a keyset page need not start at a multiple of the page size)

    @property
    def first_index(self) -> int:
        return self.start + 1 if self.rows else 0

    @property
    def last_index(self) -> int:
        return self.start + len(self.rows)

    @property
    def has_previous(self) -> bool:
        return self.start > 0

    @property
    def has_next(self) -> bool:
        return self.start + len(self.rows) < self.count

    @property
    def first_pk(self) -> int | None:
        return self.rows[0].pk if self.rows else None

    @property
    def last_pk(self) -> int | None:
        return self.rows[-1].pk if self.rows else None


def _page_selection(qs, f: StudyFilters, count: int, scope: SiteScope = EVERY_SITE):
    """Which rows ``f`` asks for, as (ids subquery or None, read backwards, rows before the page or None if the
    count query must tell). Keyset (``after`` / ``before``, ``end``): the cost of page 1 at any depth. A page
    number (the jump): OFFSET over ids only, from whichever end of the order is nearer."""
    n = f.page_size
    if f.after is not None:
        return _keyset(qs, f, f.after, forward=True, scope=scope), False, None
    if f.before is not None:
        return _keyset(qs, f, f.before, forward=False, scope=scope), True, None
    pages = max(1, math.ceil(count / n))
    walk = walks_groups(f)

    def ids(*, reverse: bool, offset: int, limit: int):
        if walk:
            return browse_groups.group_walk_ids(qs, f, scope=scope, reverse=reverse, limit=limit, offset=offset)
        return ordered(qs, f, reverse=reverse).values("pk")[offset:offset + limit]

    if f.end:  # the last numbered page (what remains after the full pages), read backwards
        last = count - (pages - 1) * n
        return ids(reverse=True, offset=0, limit=last), True, count - last
    start = (min(max(1, f.page), pages) - 1) * n
    if start == 0:
        return (ids(reverse=False, offset=0, limit=n) if walk else None), False, 0
    if start > count // 2:  # nearer the end: read backwards, skipping the rows after the page
        skip = max(0, count - start - n)
        return ids(reverse=True, offset=skip, limit=count - start - skip), True, start
    return ids(reverse=False, offset=start, limit=n), False, start


def walks_groups(f: StudyFilters) -> bool:
    """Whether the page's ids are read by walking the groups of a joined sort (``browse_groups``): PostgreSQL,
    a sort by site, device or sex, and no filter on the studies but whole groups."""
    return (f.sort_key in JOINED_SORTS and connection.vendor == "postgresql"
            and not browse_groups.has_row_filters(f))


def study_page(f: StudyFilters, *, scope: SiteScope = EVERY_SITE) -> StudyPage:
    """One page of the filtered, sorted studies and the true count (2 queries: the count, with the rows before a
    keyset cursor in the same scan; the page rows with their device and patient)."""
    qs = filtered_studies(f, scope=scope)
    cursor = f.after if f.after is not None else f.before
    if cursor is not None:
        preceding = _before_cursor(f, cursor, scope)
        if f.after is not None:  # the cursor itself (when still in the set) is before the page too
            preceding |= Q(pk=cursor)
        if walks_groups(f):
            # the walk's filters are all in the (device, date) / (patient, date) indexes: a count that reads only
            # an index, the studies of the cursor's own date (ties, by id) counted by one index probe
            got = qs.aggregate(n=Count("*"), before=Count(Value(1), filter=_beyond_cursor(f, cursor, scope, after=False, by_date=True)),
                               ties=Max(_cursor_date_ties(qs, f, cursor, scope, with_cursor=f.after is not None)))
            count, before = got["n"], got["before"] + (got["ties"] or 0)
        elif f.sort_key not in JOINED_SORTS and connection.vendor == "postgresql":
            count, before = _keyset_counts(qs, f, cursor, scope)
        else:
            got = qs.aggregate(n=Count("pk"), before=Count("pk", filter=preceding))
            count, before = got["n"], got["before"]
    else:
        count, before = qs.count(), 0
    rows: list = []
    start = 0
    if count:
        ids, backwards, start_known = _page_selection(qs, f, count, scope)
        page_qs = Study.objects.filter(pk__in=ids) if ids is not None else qs
        page_qs = ordered(page_qs, f, reverse=backwards).select_related("device", "patient").only(*PAGE_FIELDS)
        rows = list(page_qs[:f.page_size])
        if backwards:
            rows.reverse()
        if not rows and cursor is not None:
            # a cursor that is gone (a deleted study) or not the user's to see: the first page (one more query,
            # only then)
            rows = list(ordered(qs, f).select_related("device", "patient").only(*PAGE_FIELDS)[:f.page_size])
            start_known = 0
        if start_known is not None:
            start = start_known
        elif f.before is not None:
            start = max(0, before - len(rows))
        else:
            start = before
    pages = max(1, math.ceil(count / f.page_size))
    page = min(pages, start // f.page_size + 1)
    return StudyPage(rows=rows, count=count, page=page, pages=pages, page_size=f.page_size, start=start)


def filter_options(*, scope: SiteScope = EVERY_SITE) -> dict:
    """Devices and sites at the user's sites, standard names (2 queries)."""
    devices = list(Device.objects.filter(scope.device_q("pk")).order_by(Lower("display_name"), "pk")
                   .only("pk", "display_name", "manufacturer", "model", "station_name", "institution", "modality"))
    sites = sorted({d.institution.strip() for d in devices if d.institution.strip()}, key=str.lower)
    standards = list(StandardName.objects.order_by("modality", "name").only("pk", "name", "modality"))
    return {"devices": devices, "sites": sites, "standards": standards}


# ---------------------------------------------------------------------------
# exports of exactly the filtered set
# ---------------------------------------------------------------------------
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_cell(value):
    """Text without control characters (a spreadsheet refuses them; a CSV reader mis-splits on them)."""
    if isinstance(value, str):
        return _CONTROL.sub("", value).replace("\r", " ").replace("\n", " ")
    return value


STUDY_COLUMNS = [
    # header (unit in the name), value key
    ("study_datetime", "study_datetime"), ("study_instance_uid", "study_instance_uid"),
    ("accession_number", "accession_number"), ("modality", "procedure_modality"), ("site", "device__institution"),
    ("device", "device__display_name"), ("study_description", "study_description"), ("standard_name", "standard_name"),
    ("patient_id", "patient__patient_id"), ("patient_sex", "patient__sex"), ("patient_age_years", "patient_age_years"),
    ("patient_weight_kg", "patient_weight_kg"), ("not_a_patient", "not_patient_reason"),
    ("kap_total_gy_cm2", "dap_total_gy_cm2"), ("ka_r_max_plane_gy", "dose_rp_max_plane_gy"),
    ("fluoro_time_total_s", "fluoro_time_total_s"), ("ctdivol_max_mgy", "ctdivol_max_mgy"),
    ("dlp_total_mgy_cm", "dlp_total_mgy_cm"), ("ctdi_phantom", "ctdi_phantom"), ("events", "event_count"),
]
STUDY_HEADER = [h for h, _ in STUDY_COLUMNS]
CHUNK = 2000


def _phantom_subquery():
    # the study's first event with a phantom: ordered by pk + 0, not pk, so that PostgreSQL reads the study's events
    # (uniq_event_per_study) and sorts those few; ordered by pk it walked the whole event table in key order for
    # every study without a phantom (minutes for a 10k-study export)
    return Subquery(IrradiationEvent.objects.filter(study_id=OuterRef("pk")).exclude(ctdiw_phantom="")
                    .order_by(F("pk") + 0).values("ctdiw_phantom")[:1])


def study_rows(f: StudyFilters, *, scope: SiteScope = EVERY_SITE, modality: str | None = None,
               only_page: bool = False) -> Iterator[tuple]:
    """Every filtered study in the page's order, streamed (server-side cursor); ``only_page``: the rows of the
    page ``f.page`` (of ``f.page_size``) only, as shown."""
    qs = filtered_studies(f, scope=scope)
    if modality is not None:
        qs = qs.filter(procedure_modality=modality)
    keys = [k for _, k in STUDY_COLUMNS]
    if only_page:  # the page as shown: the same selection (keyset cursor, last page or page number)
        ids, _, _ = _page_selection(qs, f, qs.count() if (f.end or f.after is None and f.before is None) else 0, scope)
        if ids is not None:
            qs = Study.objects.filter(pk__in=ids)
        qs = ordered(qs, f)[:f.page_size]
    else:
        qs = ordered(qs, f)
    rows = qs.annotate(ctdi_phantom=_phantom_subquery()).values_list(*keys)
    for row in rows.iterator(chunk_size=CHUNK):
        yield tuple(clean_cell(v) for v in row)


CT_EVENT_COLUMNS = [
    ("study_datetime", "study__study_datetime"), ("study_instance_uid", "study__study_instance_uid"),
    ("device", "study__device__display_name"), ("study_description", "study__study_description"),
    ("event_datetime", "datetime"), ("irradiation_event_uid", "irradiation_event_uid"), ("event_type", "event_type"),
    ("protocol", "protocol"), ("target_region", "target_region"), ("ctdivol_mgy", "ctdivol_mgy"),
    ("dlp_mgy_cm", "dlp_mgy_cm"), ("ctdi_phantom", "ctdiw_phantom"), ("scanning_length_mm", "ct_scanning_length_mm"),
    ("pitch_factor", "ct_pitch_factor"), ("exposure_time_s", "ct_exposure_time_s"), ("kvp_kv", "kvp"),
    ("tube_current_ma", "tube_current_ma"), ("ssde_mgy", "ssde_mgy"),
]
PROJECTION_EVENT_COLUMNS = [
    ("study_datetime", "study__study_datetime"), ("study_instance_uid", "study__study_instance_uid"),
    ("modality", "study__procedure_modality"), ("device", "study__device__display_name"),
    ("study_description", "study__study_description"), ("event_datetime", "datetime"),
    ("irradiation_event_uid", "irradiation_event_uid"), ("event_type", "event_type"), ("plane", "plane"),
    ("protocol", "protocol"), ("target_region", "target_region"), ("kap_gy_cm2", "dap_gy_cm2"),
    ("ka_r_gy", "dose_rp_gy"), ("kvp_kv", "kvp"), ("tube_current_ma", "tube_current_ma"),
    ("exposure_time_ms", "exposure_time_ms"), ("pulse_rate_per_s", "pulse_rate_per_s"),
    ("number_of_frames", "number_of_frames"), ("irradiation_duration_s", "irradiation_duration_s"),
    ("fluoro_mode", "fluoro_mode"), ("dose_mode", "dose_mode"), ("filter_material", "filter_material"),
    ("primary_angle_deg", "positioner_primary_angle_deg"), ("secondary_angle_deg", "positioner_secondary_angle_deg"),
    ("collimated_field_area_m2", "collimated_field_area_m2"), ("source_to_detector_mm", "distance_source_to_detector_mm"),
    ("exposure_index", "exposure_index"), ("deviation_index", "deviation_index"),
]


def event_rows(f: StudyFilters, *, scope: SiteScope = EVERY_SITE, ct: bool) -> Iterator[tuple]:
    """The irradiation events of the filtered studies: CT (one row per series/acquisition) or projection."""
    studies = filtered_studies(f, scope=scope).filter(
        procedure_modality__in=("CT",) if ct else PROJECTION_MODALITIES).values("pk")
    cols = CT_EVENT_COLUMNS if ct else PROJECTION_EVENT_COLUMNS
    qs = (IrradiationEvent.objects.filter(study_id__in=studies)
          .order_by("study__study_datetime", "study_id", F("datetime").asc(nulls_last=True), "pk")
          .values_list(*[k for _, k in cols]))
    for row in qs.iterator(chunk_size=CHUNK):
        yield tuple(clean_cell(v) for v in row)


def modalities_present(f: StudyFilters, *, scope: SiteScope = EVERY_SITE) -> list[str]:
    return sorted(m for m in filtered_studies(f, scope=scope).order_by().values_list("procedure_modality", flat=True)
                  .distinct() if m is not None)


def export_sheets(f: StudyFilters, *, scope: SiteScope = EVERY_SITE) -> Iterator[tuple[str, list[str], Iterator]]:
    """The XLSX sheets: all studies, the studies of each modality, CT events (per series), projection events."""
    yield "All studies", STUDY_HEADER, study_rows(f, scope=scope)
    present = modalities_present(f, scope=scope)
    for m in present:
        yield f"{m or 'no modality'} studies", STUDY_HEADER, study_rows(f, scope=scope, modality=m)
    if "CT" in present:
        yield "CT series", [h for h, _ in CT_EVENT_COLUMNS], event_rows(f, scope=scope, ct=True)
    if set(present) & set(PROJECTION_MODALITIES):
        yield "Projection events", [h for h, _ in PROJECTION_EVENT_COLUMNS], event_rows(f, scope=scope, ct=False)


def _xlsx_value(value):
    from dosereg import formatting as fmt

    if isinstance(value, datetime):
        return value.astimezone(timezone.get_current_timezone()).replace(tzinfo=None) if value.tzinfo else value
    if isinstance(value, float):
        return fmt.machine(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # never run as a formula
    return value


def write_xlsx(sheets, out) -> dict[str, int]:
    """Write ``(name, header, rows)`` sheets to the file ``out`` in constant memory (openpyxl write-only): bold
    header row, frozen below it, with an autofilter over the data. Returns the rows written per sheet."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook(write_only=True)
    written = {}
    bold, fill = Font(bold=True), PatternFill("solid", fgColor="DCE6F1")
    for name, header, rows in sheets:
        ws = wb.create_sheet(name[:31])
        ws.freeze_panes = "A2"  # before the first row: the sheet view is written first
        for i, h in enumerate(header, start=1):
            ws.column_dimensions[get_column_letter(i)].width = max(10, min(40, len(h) + 2))
        cells = []
        for h in header:
            c = WriteOnlyCell(ws, value=h)
            c.font, c.fill = bold, fill
            cells.append(c)
        ws.append(cells)
        n = 0
        for row in rows:
            ws.append([_xlsx_value(v) for v in row])
            n += 1
        ws.auto_filter.ref = f"A1:{get_column_letter(len(header))}{n + 1}"  # written when the sheet closes
        written[name[:31]] = n
    wb.save(out)
    return written


# ---------------------------------------------------------------------------
# a home page per modality: counts and medians per room over time
# ---------------------------------------------------------------------------
MODALITY_QUANTITIES = {
    "CT": ("dlp_total_mgy_cm", "ctdivol_max_mgy"),
    "RF": ("dap_total_gy_cm2", "dose_rp_max_plane_gy", "fluoro_time_total_s"),
    "XA": ("dap_total_gy_cm2", "dose_rp_max_plane_gy", "fluoro_time_total_s"),
    "DX": ("dap_total_gy_cm2", "dose_rp_max_plane_gy"),
    "CR": ("dap_total_gy_cm2", "dose_rp_max_plane_gy"),
    "MG": ("dose_rp_max_plane_gy", "dap_total_gy_cm2"),
}


def _quantity_meta(field_name: str) -> tuple[str, str]:
    """A study field's label and stored unit, from the one formatting home."""
    from dosereg import formatting as fmt

    q = fmt.quantity_of(field_name)
    return q.label, q.unit


def month_starts(now: datetime, months: int) -> list[date]:
    """The first days of the last ``months`` calendar months (this one included), oldest first."""
    d = timezone.localtime(now).date().replace(day=1)
    out = [d]
    for _ in range(months - 1):
        d = (d - timedelta(days=1)).replace(day=1)
        out.append(d)
    return out[::-1]


def _month_end(first: date) -> date:
    return ((first + timedelta(days=32)).replace(day=1)) - timedelta(days=1)


def modality_overview(*, modality: str, scope: SiteScope = EVERY_SITE, now: datetime | None = None,
                      months: int = 12) -> dict:
    """Per room (device) and calendar month: procedures and the median of each of the modality's quantities
    (patients only: phantom/QA studies left out, as in every statistic). 2 queries on PostgreSQL (medians by
    ``percentile_cont`` in the database); elsewhere (the SQLite demo) the medians are taken in Python."""
    import statistics

    from django.db.models.functions import TruncMonth

    from .selectors import Percentile

    now = now or timezone.now()
    firsts = month_starts(now, months)
    since = datetime.combine(firsts[0], time.min, tzinfo=timezone.get_current_timezone())
    fields = MODALITY_QUANTITIES.get(modality, ())
    qs = (Study.objects.filter(scope.study_q(), procedure_modality=modality, study_datetime__gte=since,
                               study_datetime__lte=now, not_patient_reason="", device__isnull=False)
          .annotate(month=TruncMonth("study_datetime")))
    cells: dict[tuple[int, date], dict] = {}
    rows: list[dict[str, Any]]
    if not scope.unrestricted and not scope.sites:
        rows = []
    elif connection.vendor == "postgresql":
        medians: dict[str, Any] = {f"med_{f}": Percentile(f, 0.5) for f in fields}
        rows = [dict(r) for r in qs.values("device_id", "month").annotate(n=Count("id"), **medians).order_by()]
    else:
        acc: dict[tuple, dict[str, Any]] = {}
        for r in qs.values("device_id", "month", *fields).iterator(chunk_size=CHUNK):
            a = acc.setdefault((r["device_id"], r["month"]), {"device_id": r["device_id"], "month": r["month"], "n": 0,
                                                             **{f"v_{f}": [] for f in fields}})
            a["n"] += 1
            for f in fields:
                if r[f] is not None:
                    a[f"v_{f}"].append(r[f])
        rows = [{**{k: v for k, v in a.items() if not k.startswith("v_")},
                 **{f"med_{f}": statistics.median(a[f"v_{f}"]) if a[f"v_{f}"] else None for f in fields}}
                for a in acc.values()]
    for r in rows:
        m = r["month"]
        m = timezone.localtime(m).date() if isinstance(m, datetime) else m
        cells[(r["device_id"], m.replace(day=1))] = r
    devices = {d.pk: d for d in Device.objects.filter(pk__in={k[0] for k in cells})} if cells else {}
    rooms = []
    for dev_id in sorted(devices, key=lambda i: str(devices[i]).lower()):
        got = [cells.get((dev_id, m)) for m in firsts]
        rooms.append({
            "device": devices[dev_id], "name": str(devices[dev_id]), "site": devices[dev_id].institution,
            "counts": [c["n"] if c else 0 for c in got], "total": sum(c["n"] for c in got if c),
            "medians": {f: [c.get(f"med_{f}") if c else None for c in got] for f in fields},
        })
    present = [f for f in fields if any(v is not None for r in rooms for v in r["medians"][f])]
    return {
        "modality": modality, "months": firsts, "month_ends": [_month_end(m) for m in firsts], "rooms": rooms,
        "quantities": [{"key": f, "label": _quantity_meta(f)[0], "unit": _quantity_meta(f)[1]} for f in present],
        "total": sum(r["total"] for r in rooms),
    }


def modalities_in_scope(*, scope: SiteScope = EVERY_SITE) -> list[str]:
    """The modalities of the studies at the user's sites (1 query; every site on PostgreSQL: a loose index scan)."""
    if not scope.unrestricted and not scope.sites:
        return []
    if scope.unrestricted and connection.vendor == "postgresql":
        # the (procedure_modality, id) sort index, one probe per modality, instead of a DISTINCT over every study
        # (12-15 ms at 100k studies, linear)
        with connection.cursor() as cur:
            cur.execute(browse_groups.loose_distinct_sql("procedure_modality", skip_blank=True))
            return sorted(row[0] for row in cur.fetchall())
    return sorted(m for m in Study.objects.filter(scope.study_q()).exclude(procedure_modality="").order_by()
                  .values_list("procedure_modality", flat=True).distinct())
