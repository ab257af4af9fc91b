"""The patients list (``/patients/``, issue 17 part 5): search, sort by any column, paging with the true count, and
each patient's cumulative dose indices over the last 12 months (the exposure app's window ending now).

Query count (asserted in the tests), whatever the page size or the number of patients: ``patient_page`` runs 2
(the true count; the page rows with their exams at the user's sites and their cumulative window, as subqueries;
for a user of every site the exams and last exam date are the exposure app's per-record summary, a join).

* Site scope is the one of every clinical page: a site-scoped RSO sees the patients with an exam at their sites,
  the number and last date of those exams; the cumulative totals stay the patient's totals over every site (what
  alert levels are measured against), as on the history page.
* A merged record is not listed (its exams count for the record it was merged into, up to two merges deep:
  ``A → B → C`` is followed from C; the cumulative totals cover the whole chain, as the exposure app computes them).
* The search matches the Patient ID (exactly, or its start; with ``PSEUDONYMISE_PATIENTS`` the pseudonym of what
  was typed) or every word typed somewhere in the stored DICOM name (any component group: ``yamada tarou`` and
  ``山田`` both find ``Yamada^Tarou=山田^太郎=やまだ^たろう``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import (Case, DateTimeField, Exists, ExpressionWrapper, F, Func, IntegerField, OuterRef, Q, Subquery,
                              Value, When)
from django.db.models.functions import Coalesce, Greatest, Lower

from dosereg.access.scope import EVERY_SITE, SiteScope
from dosereg.exposure.models import PatientExposureState
from dosereg.registry.models import Patient, Study

from . import integrations
from .params import PageNumbers, QueryParams, SortChoice

PAGE_SIZES = (10, 25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
DEFAULT_SORT = "-last"

# sortable columns: key -> (order expression, heading, unit); every ordering ends with pk (stable pages)
SORTS: dict[str, tuple[Any, str, str]] = {
    "id": (F("patient_id"), "Patient ID", ""),
    "name": (Lower("name"), "Name", ""),
    "sex": (F("sex"), "Sex", ""),
    "born": (F("birth_date"), "Born", ""),
    "exams": (F("n_studies"), "Exams", ""),
    "last": (F("last_study"), "Last exam", ""),
    "kap": (F("cum_kap_gy_cm2"), "KAP", "Gy·cm²"),
    "kar": (F("cum_kar_gy"), "Ka,r", "Gy"),
    "dlp": (F("cum_dlp_mgy_cm"), "DLP", "mGy·cm"),
    "effective": (F("cum_effective_dose_msv"), "Effective dose", "mSv"),
}
CUMULATIVE = ("kap", "kar", "dlp", "effective")


@dataclass
class PatientFilters(SortChoice):
    q: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    errors: dict = field(default_factory=dict)


def read_filters(query) -> PatientFilters:
    """The list's parameters from a query string (an invalid one is ignored and named in ``errors``)."""
    p = QueryParams(query, strict=False)
    f = PatientFilters(q=p.text("q", max_length=128).strip())
    sort = p.text("sort", max_length=32)
    if sort:
        if sort.lstrip("-") in SORTS:
            f.sort = sort
        else:
            p.errors["sort"] = f"{sort[:20]!r} is not a column"
    f.page = p.int("page", max_value=10**9) or 1
    size = p.int("per_page", max_value=10**6)
    if size is not None:
        if size in PAGE_SIZES:
            f.page_size = size
        else:
            p.errors["per_page"] = f"{size} is not one of {', '.join(map(str, PAGE_SIZES))}"
    f.errors = p.errors
    return f


def _search_q(q: str) -> Q:
    cond = Q(patient_id__iexact=q) | Q(patient_id__istartswith=q)
    if getattr(settings, "PSEUDONYMISE_PATIENTS", False):
        from dosereg.registry.patients import pseudonym

        cond |= Q(patient_id=pseudonym(q))
    words = q.replace("^", " ").replace("=", " ").split()
    if words:
        name_q = Q()
        for w in words[:8]:
            name_q &= Q(name__icontains=w)
        cond |= name_q
    return cond


# the studies of a surviving record: its own (level 0) and those of records merged into it, one level per merge
MERGE_LEVELS = ("patient_id", "patient__merged_into_id", "patient__merged_into__merged_into_id")


def filtered_patients(f: PatientFilters, *, scope: SiteScope = EVERY_SITE):
    """The surviving patient records of ``f`` visible in ``scope`` (a lazy queryset, unordered)."""
    qs = Patient.objects.filter(merged_into__isnull=True).filter(scope.patient_q())
    if not scope.unrestricted and not scope.sites:
        return qs.none()
    if f.q:
        qs = qs.filter(_search_q(f.q))
    return qs


def _annotated(qs, *, scope: SiteScope, sort_key: str = ""):
    """Per patient: exams (at the sites) and the last one's date; the cumulative window of the exposure app.

    Every site (an unrestricted user): the counts the exposure app keeps on the record's exposure state (its merge
    group's studies, written by each recompute: after ingest, merge, unmerge and a deleted study), so sorting by
    them reads one row per patient instead of aggregating every study. At some sites: one indexed subquery per
    merge level (an OR over the levels would scan every study per patient)."""
    cumulative = integrations.cumulative_window_subqueries(outer_patient="pk")
    if scope.unrestricted:
        if sort_key in ("exams", "last"):  # sorted by them: one join of every record's state row
            return qs.annotate(n_studies=Coalesce(F("exposure_state__study_count"), Value(0)),
                               last_study=F("exposure_state__last_study_at"), **cumulative)
        # shown only: read for the page's rows (a sub-select the planner evaluates after the sort and limit)
        state = PatientExposureState.objects.filter(patient_id=OuterRef("pk"))
        return qs.annotate(n_studies=Coalesce(Subquery(state.values("study_count")[:1]), Value(0)),
                           last_study=Subquery(state.values("last_study_at")[:1]), **cumulative)
    counts: list[Any] = []
    lasts: list[Any] = []
    # the merged levels are read only for a record that has merged records (an index probe; CASE is lazy), so the
    # join they need is not run for the many patients who were never merged
    has_merged = Exists(Patient.objects.filter(merged_into_id=OuterRef("pk")))
    for i, level in enumerate(MERGE_LEVELS):
        # one aggregate row per outer patient (COUNT/MAX as plain functions: no GROUP BY in the subquery)
        at_sites = Study.objects.filter(**{level: OuterRef("pk")}).filter(scope.study_q()).order_by()
        n: Any = Coalesce(Subquery(at_sites.values(n=Func("pk", function="COUNT")), output_field=IntegerField()), 0)
        m: Any = Subquery(at_sites.values(m=Func("study_datetime", function="MAX")), output_field=DateTimeField())
        if i:
            n = Case(When(has_merged, then=n), default=Value(0), output_field=IntegerField())
            m = Case(When(has_merged, then=m), default=Value(None), output_field=DateTimeField())
        counts.append(n)
        lasts.append(m)
    n_studies: Any = counts[0]
    for c in counts[1:]:
        n_studies = n_studies + c
    # the latest of the levels: PostgreSQL's GREATEST skips NULLs (each level's subquery runs once per row);
    # SQLite's (the demo) is NULL if any argument is, so there each argument falls back on the other levels
    if connection.vendor == "postgresql":
        last = Greatest(*lasts)
    else:
        last = Greatest(*[Coalesce(m, *[o for o in lasts if o is not m]) for m in lasts])
    return qs.annotate(n_studies=ExpressionWrapper(n_studies, output_field=IntegerField()), last_study=last, **cumulative)


@dataclass
class PatientPage(PageNumbers):
    rows: list
    count: int
    page: int
    pages: int
    page_size: int
    window_label: str = ""


def patient_page(f: PatientFilters, *, scope: SiteScope = EVERY_SITE) -> PatientPage:
    """One page of the searched, sorted patients and the true count (2 queries)."""
    qs = filtered_patients(f, scope=scope)
    count = qs.count()
    pages = max(1, math.ceil(count / f.page_size))
    page = min(max(1, f.page), pages)
    start = (page - 1) * f.page_size
    rows: list[dict] = []
    if count:
        expr = SORTS[f.sort_key][0]
        order = f.order(expr)
        rows = list(_annotated(qs, scope=scope, sort_key=f.sort_key).order_by(order, "-pk" if f.descending else "pk").values(
            "pk", "patient_id", "issuer", "name", "sex", "birth_date", "pseudonymised", "n_studies", "last_study",
            *integrations.CUMULATIVE_FIELDS)[start:start + f.page_size])
    return PatientPage(rows=rows, count=count, page=page, pages=pages, page_size=f.page_size,
                       window_label=integrations.cumulative_window_label())


def sort_columns(f: PatientFilters) -> list[dict]:
    """The column headings: the sort each click gives (first click: largest / newest first, names A to Z) and
    the current state for ``aria-sort``."""
    out = []
    for key, (_, heading, unit) in SORTS.items():
        first = key if key in ("id", "name", "sex") else f"-{key}"
        if f.sort_key == key:
            nxt = key if f.descending else f"-{key}"
            state = "descending" if f.descending else "ascending"
        else:
            nxt, state = first, "none"
        out.append({"key": key, "heading": heading, "unit": unit, "next": nxt, "state": state,
                    "num": key in CUMULATIVE or key == "exams", "cumulative": key in CUMULATIVE})
    return out
