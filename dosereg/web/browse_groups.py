"""The study browser's sorts by a column of the study's device or patient (site, device, patient sex) on PostgreSQL,
read from the existing indexes one value at a time instead of sorting every study (issue 17).

A plain ``ORDER BY lower(device.institution), ...`` joins and sorts every study for any page (no index of the study
holds its device's site, and one more index on the ingest's hottest table is one more write per ingested study).
These keys have few values (the devices, a few dozen; the sexes, four), so one query walks the
values in order, the outer side of a ``LATERAL`` join, and for each value reads its studies newest first from an
index, limited; PostgreSQL stops as soon as the page is full:

* site and device: the groups are the devices (by site, name and id; by name and id), each walked on the
  ``(device, date)`` index, then the studies without a device;
* sex: the groups are the values of the studies' copy of their patient's sex (``Study.patient_sex``, kept by the
  registry; a loose scan of its index), each walked on the ``(sex, date, id)`` index, then the studies without a
  patient (on the ``(patient, date)`` index). Before the copy, a sex was walked on the date index with the patient
  as a join filter: a jump by page number to the middle of 100,000 studies read 50,000 of them with their patients
  (150 ms of SQL), and a keyset page's row numbers counted through the same join.

The order is therefore the key, then (site) the device, then newest first, then the id: the ORDER BY that
``browse.ordered`` gives the page's rows. Keyset pages start within the cursor's group (its group's walk is bounded by
the cursor's date and id, a row comparison the index reads as a range) and go on through the later groups; every
branch of a group is limited, so the cost of a page does not depend on its depth. Studies without a date come after
the dated ones of their group (a branch of their own, by id). A page number is an OFFSET over these ids.

Used without row filters, or with the filters the walk's indexes read themselves: the modality (included in both
indexes: a group without studies of that modality costs an index-only scan of its entries, not a fetch of each of
its studies) and the date range (the indexes' date key). Another filter on the studies (a dose range, say) may leave
a whole group without a match, and its walk would then read every study of the group to find none: with one, the
filter narrows the scan and the plain ORDER BY applies. SQLite (the embedded default, small registries) always uses
the plain ORDER BY.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import F, Q, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Lower, Trim
from django.db.models.lookups import Exact, IsNull

from dosereg.access.scope import SiteScope, normalise
from dosereg.registry.models import Device, Study

if TYPE_CHECKING:
    from .browse import StudyFilters

BIG_ID = 2 ** 63 - 1
# the filters that select whole groups (the walk reads only those groups); any other filter is a row filter
GROUP_FILTERS = {"site": ("site", "device"), "device": ("site", "device"), "sex": ("sex",)}


def has_row_filters(f: StudyFilters) -> bool:
    """Whether ``f`` filters the studies beyond choosing whole groups of its sort and beyond what the walk's
    indexes hold (the modality, the date range)."""
    group = GROUP_FILTERS[f.sort_key]
    return bool(
        f.protocol or f.standard is not None or f.family
        or f.description is not None or f.ionising or f.reported or f.age_band or f.not_patient != "all"
        or f.flagged or f.ranges
        or ("site" not in group and f.site) or ("device" not in group and f.device is not None)
        or ("sex" not in group and f.sex))


def _sql(qs) -> tuple[str, list]:
    sql, params = qs.query.sql_with_params()
    return sql, list(params)


def loose_distinct_sql(column: str, *, skip_blank: bool = False) -> str:
    """The distinct values of a study column in ascending order, read by a loose index scan (PostgreSQL): one probe
    of an index leading with ``column`` per value, so a column of a few values costs a few probes at any number of
    studies, where a DISTINCT reads every study. ``skip_blank``: without "". The column must be NOT NULL."""
    t, c = connection.ops.quote_name(Study._meta.db_table), connection.ops.quote_name(column)
    first = f"SELECT {c} FROM {t}" + (f" WHERE {c} > ''" if skip_blank else "") + f" ORDER BY {c} LIMIT 1"
    return (f"WITH RECURSIVE v(x) AS (({first}) UNION ALL SELECT (SELECT s.{c} FROM {t} s WHERE s.{c} > v.x "
            f"ORDER BY s.{c} LIMIT 1) FROM v WHERE v.x IS NOT NULL) SELECT x FROM v WHERE x IS NOT NULL")


def _groups(f: StudyFilters, scope: SiteScope) -> tuple[str, list, str]:
    """The SQL of the groups in the page order (``gid``, ``pos`` from 1), and the study column that names the
    group. Devices: the user's, narrowed by the site and device filters, then the group of studies without one."""
    desc = "DESC" if f.descending else "ASC"
    parts: list[tuple[str, list]] = []
    if f.sort_key == "sex":
        # the sexes the studies' copies hold (Study.patient_sex), read from the (sex, date, id) index one value at a
        # time (a loose index scan: a few probes, not a scan of the studies or of the patients), or the one filtered
        if f.sex:
            parts.append(("SELECT %s::text", ["" if f.sex == "U" else f.sex]))
        else:
            parts.append((loose_distinct_sql("patient_sex"), []))
        if f.sex in ("", "U"):  # the studies without a patient
            parts.append(("SELECT NULL::text", []))
        union = " UNION ALL ".join(f"({s})" for s, _ in parts)
        sql = f"SELECT u.gid, row_number() OVER (ORDER BY u.gid {desc} NULLS LAST) AS pos FROM ({union}) u(gid)"
        return sql, [p for _, ps in parts for p in ps], "sex"
    devs = Device.objects.filter(scope.device_q("pk")).order_by()
    if f.site:
        devs = devs.alias(_site=Lower(Trim("institution"))).filter(_site=normalise(f.site))
    if f.device:
        devs = devs.filter(pk=f.device)
    if f.sort_key == "site":
        keys = devs.annotate(_k1=Lower("institution"), _k2=Lower("display_name")).values_list("pk", "_k1", "_k2")
        order = f"u.k1 {desc} NULLS LAST, u.k2 ASC NULLS LAST, u.gid ASC NULLS LAST"
    else:
        keys = devs.annotate(_k1=Lower("display_name"), _k2=Lower("display_name")).values_list("pk", "_k1", "_k2")
        order = f"u.k1 {desc} NULLS LAST, u.gid ASC NULLS LAST"
    if f.device != 0:
        try:
            parts.append(_sql(keys))
        except EmptyResultSet:  # a scope without a site
            pass
    if scope.unrestricted and not f.site and not f.device:  # the studies without a device (no site's)
        parts.append(("SELECT NULL::bigint, NULL::text, NULL::text", []))
    if not parts:
        parts.append(("SELECT NULL::bigint, NULL::text, NULL::text WHERE false", []))
    union = " UNION ALL ".join(f"({s})" for s, _ in parts)
    sql = f"SELECT u.gid, row_number() OVER (ORDER BY {order}) AS pos FROM ({union}) u(gid, k1, k2)"
    return sql, [p for _, ps in parts for p in ps], "device"


def _branches(qs, kind: str, *, reverse: bool, limit: int) -> tuple[str, list]:
    """The lateral side: the studies of the group ``grp`` past its bounds, each branch ordered and limited: dated
    studies (a range of the index), undated ones (by id); for the valued groups and for the group without a
    device / patient."""
    from .browse import RowCompare

    gid = RawSQL('"grp"."gid"', [])
    b_dt, b_id, n_id = (RawSQL(f'"grp"."{c}"', []) for c in ("b_dt", "b_id", "n_id"))
    if kind == "device":
        valued, empty = Q(device_id=gid), Q(device_id__isnull=True)
    else:  # the study's copy of its patient's sex; a study without a patient is in the group without a value
        valued, empty = Q(patient_sex=gid), Q(patient__isnull=True)
    # dated studies in the date order of the index that serves the walk, (device, date) or (sex, date, id), read
    # backwards (DESC is NULLS FIRST there; these rows all have a date)
    dt = F("study_datetime")
    if reverse:
        dated = (RowCompare(">", [dt, F("pk")], [b_dt, b_id]), [dt.asc(), F("pk").asc()])
        undated = (Q(study_datetime__isnull=True, pk__gt=n_id), [F("pk").asc()])
        pieces = [undated, dated]
    else:
        dated = (RowCompare("<", [dt, F("pk")], [b_dt, b_id]), [dt.desc(), F("pk").desc()])
        undated = (Q(study_datetime__isnull=True, pk__lt=n_id), [F("pk").desc()])
        pieces = [dated, undated]
    groups = [(valued, Q(IsNull(gid, False))), (empty, Q(IsNull(gid, True)))]
    if kind == "sex":
        # a study without a patient also holds "" (not recorded): the group "" leaves those out, the other groups
        # need no such filter, so that their walk reads the (sex, date, id) index alone (an index-only scan: a
        # jump to the middle page reads 50,000 index entries, not 50,000 rows)
        blank = Q(Exact(gid, Value("")))
        groups = [(valued, Q(IsNull(gid, False)) & ~blank), (valued & Q(patient__isnull=False), blank),
                  (empty, Q(IsNull(gid, True)))]
    sqls: list[tuple[str, list]] = []
    for group_q, gate in groups:
        for cond, order in pieces:
            b = qs.filter(group_q).filter(gate).filter(cond).order_by(*order).values("pk", "study_datetime")[:limit]
            sqls.append(_sql(b))
    return " UNION ALL ".join(f"({s})" for s, _ in sqls), [p for _, ps in sqls for p in ps]


def group_walk_ids(qs, f: StudyFilters, *, scope: SiteScope, reverse: bool, limit: int, offset: int = 0,
                   cursor: int | None = None) -> RawSQL:
    """The ids of the studies of ``qs`` (``filtered_studies(f)``) at ``offset``, at most ``limit`` of them, in the
    order of ``f`` (``reverse``: exactly backwards), counted from the study ``cursor`` exclusive (forward: the
    studies after it; reverse: those before it, nearest first) or from the start. One statement, for
    ``pk__in``; nothing when the cursor is not the user's to see."""
    groups, g_params, kind = _groups(f, scope)
    params: list = []
    head = ""
    if cursor is not None:
        col = "device_id" if kind == "device" else "patient__sex"
        c_sql, c_params = _sql(Study.objects.filter(scope.study_q(), pk=cursor).values_list(col, "study_datetime", "pk"))
        head = (f'WITH "grp_c" AS MATERIALIZED (SELECT r.pos, c.dt, c.id FROM ({groups}) r JOIN ({c_sql}) c(gid, dt, id) '
                f"ON r.gid IS NOT DISTINCT FROM c.gid) ")
        params += g_params + c_params
        same = 'r.pos = (SELECT pos FROM "grp_c")'
        c_dt, c_id = '(SELECT dt FROM "grp_c")', '(SELECT id FROM "grp_c")'
        if reverse:  # before the cursor: the dated studies later than it (all, if it has no date), the undated after
            bounds = (f"CASE WHEN {same} THEN COALESCE({c_dt}, '-infinity'::timestamptz) ELSE '-infinity'::timestamptz END, "
                      f"CASE WHEN {same} THEN {c_id} ELSE -1 END, "
                      f"CASE WHEN {same} THEN (CASE WHEN {c_dt} IS NULL THEN {c_id} ELSE {BIG_ID} END) ELSE -1 END")
            where = 'WHERE r.pos <= (SELECT pos FROM "grp_c")'
        else:  # after it: the dated studies earlier than it (none, if it has no date), every undated one (or after it)
            bounds = (f"CASE WHEN {same} THEN COALESCE({c_dt}, '-infinity'::timestamptz) ELSE 'infinity'::timestamptz END, "
                      f"CASE WHEN {same} THEN {c_id} ELSE {BIG_ID} END, "
                      f"CASE WHEN {same} AND {c_dt} IS NULL THEN {c_id} ELSE {BIG_ID} END")
            where = 'WHERE r.pos >= (SELECT pos FROM "grp_c")'
    elif reverse:
        bounds, where = "'-infinity'::timestamptz, -1, -1", ""
    else:
        bounds, where = f"'infinity'::timestamptz, {BIG_ID}, {BIG_ID}", ""
    direction = "DESC" if reverse else "ASC"
    lateral, l_params = _branches(qs, kind, reverse=reverse, limit=limit + offset)
    params += g_params + l_params + [limit, offset]
    within = '"x"."study_datetime" ASC NULLS FIRST, "x"."id" ASC' if reverse else \
        '"x"."study_datetime" DESC NULLS LAST, "x"."id" DESC'
    sql = (f'{head}SELECT "x"."id" FROM (SELECT r.gid, r.pos, {bounds} FROM ({groups}) r {where} ORDER BY r.pos {direction}) '
           f'"grp"(gid, pos, b_dt, b_id, n_id) CROSS JOIN LATERAL ({lateral}) "x"(id, study_datetime) '
           f'ORDER BY "grp"."pos" {direction}, {within} LIMIT %s OFFSET %s')
    return RawSQL(sql, params)
