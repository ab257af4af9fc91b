"""Reads of the protocol audit summaries: one SQL statement per call, whatever the number of studies.

``audit_groups`` returns, per (device, standard name, modality; an unmapped vendor description on its own; a name of
a paediatric age-band family per band of the patients' age, see ``age_bands``), the exact procedure count and per quantity
a ``histogram.Summary`` (exact n, sum, min, max; quartiles within 0.5 %). In one statement (one snapshot):

* the stored monthly summaries of the clean buckets that lie wholly inside the period (their studies'
  first/last dates decide, so the month in progress counts as inside when nothing in it is later than the
  period's end);
* the studies, read exactly, of the buckets that are dirty or cut by the period's ends (only the part inside
  the period is read, through the (device, study_datetime) index);
* the studies newer than the summaries' watermark (through the primary key).

The vendor study description is mapped to its standard name while reading, so a mapping edit shows at once. Every
branch carries the patients' age class (``age_bands.age_class``: stored in the summaries, computed in SQL for the
studies read exactly); a name of an age-band family is split by band, any other name merges its classes.
The work grows with devices x months x descriptions, not with studies (apart from the months cut by the
period's ends and what changed since the last refresh, which the periodic task keeps small).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.db import connection

from dosereg.registry.models import Study

from . import age_bands
from .histogram import Summary
from .models import (SUMMARY_QUANTITIES, SUMMARY_SUFFIXES, ProtocolMapping, ProtocolSummary, StandardName, SummaryBucket,
                     SummaryState)


class AuditKey(NamedTuple):
    """One audit group. A mapped name: its id, description "". An unmapped vendor description: id None, the
    description. A name of an age-band family (its own or a band's): id None, description "", the family's name
    and the band of the patients' age (``age_bands.UNKNOWN`` when the age is not known)."""

    device_id: int | None
    standard_name_id: int | None
    modality: str
    description: str
    family: str = ""
    age_band: str = ""


@dataclass
class GroupSummary:
    n: int = 0  # procedures (exact)
    quantities: dict[str, Summary] = field(default_factory=dict)

    def quantity(self, key: str) -> Summary:
        s = self.quantities.get(key)
        if s is None:
            s = self.quantities[key] = Summary()
        return s


def _sql(*, modality: str, device_id: int | None) -> tuple[str, list[str]]:
    """The statement and the names of its parameters, in order.

    Every branch yields (src, device key, modality, description, procedures, then per quantity n, sum, min,
    max, bins). A study read exactly is a summary of one (src 1: its value in the sum column)."""
    qn = connection.ops.quote_name
    bucket, summary, state, std_name = (qn(m._meta.db_table) for m in (SummaryBucket, ProtocolSummary, SummaryState,
                                                                       StandardName))
    study, mapping = qn(Study._meta.db_table), qn(ProtocolMapping._meta.db_table)
    names: list[str] = []

    def p(name: str) -> str:
        names.append(name)
        return "%s"

    def in_period(col: str) -> str:
        return f"{col} >= {p('since')} AND {col} < {p('until')}"

    summary_cols = ", ".join(f"g.{qn(f'{q}_{x}')} AS {qn(f'{q}_{x}')}" for q in SUMMARY_QUANTITIES for x in SUMMARY_SUFFIXES)
    study_cols = ", ".join(f"NULL, s.{qn(q)}, NULL, NULL, NULL" for q in SUMMARY_QUANTITIES)
    postgresql = connection.vendor == "postgresql"
    study_cols += ", " + age_bands.age_class_sql("s.patient_age_years", postgresql=postgresql)

    def exact(device_join: str, device_key: str, where: Callable[[], str]) -> str:
        """Studies of the buckets that cannot be used whole (dirty, or cut by the period), up to the watermark.

        Read per bucket (a LATERAL subquery, ``OFFSET 0`` so that PostgreSQL does not flatten it into a join):
        each bucket's month of its device, only the part inside the period, on the (device, study_datetime) index
        (an index range bounded at both ends: a month cut by the period reads only its studies inside it). As a
        plain join the planner,
        misjudging how many buckets the OR below leaves (405 for 30 at 1M events), read every study of the
        period and hashed them against the buckets (50,000 studies, 96 of the page's 104 ms of SQL).
        SQLite (the embedded default: no LATERAL, no GREATEST) joins the studies to the buckets plainly."""
        # the studies of one bucket inside the period (each p() in the order its placeholder stands in the text)
        if postgresql:
            in_bucket = (f"s.study_datetime >= GREATEST(b.starts_at, {p('since')}) "
                         f"AND s.study_datetime < LEAST(b.ends_at, {p('until')})")
        else:
            in_bucket = f"s.study_datetime >= b.starts_at AND s.study_datetime < b.ends_at AND {in_period('s.study_datetime')}"
        studies = (f"{device_join} AND {in_bucket} AND s.has_ionising_dose AND s.not_patient_reason = '' "
                   f"AND s.id <= st.max_study_id" + (f" AND s.procedure_modality = {p('modality')}" if modality else ""))
        source = (f"CROSS JOIN LATERAL (SELECT s.* FROM {study} s WHERE {studies} OFFSET 0) s" if postgresql
                  else f"JOIN {study} s ON {studies}")
        return (
            f"SELECT 1, {device_key}, s.procedure_modality, s.study_description, 1, {study_cols} "
            f"FROM {bucket} b JOIN {state} st ON st.id = 1 {source} "
            f"WHERE {where()} AND b.ends_at > {p('since')} AND b.starts_at < {p('until')} "
            f"AND (b.dirty OR b.first_study_at IS NULL OR b.first_study_at < {p('since')} OR b.last_study_at >= {p('until')})"
        )

    parts = [
        # A: clean buckets wholly inside the period, from their stored summaries
        f"SELECT 0 AS src, b.device_key AS device_key, g.modality AS modality, g.study_description AS descr, "
        f"g.n_studies AS n_studies, {summary_cols}, g.age_class AS age_class "
        f"FROM {bucket} b JOIN {summary} g ON g.bucket_id = b.id JOIN {state} st ON st.id = 1 "
        f"WHERE b.ends_at > {p('since')} AND b.starts_at < {p('until')} AND NOT b.dirty "
        f"AND b.first_study_at >= {p('since')} AND b.last_study_at < {p('until')}"
        + (f" AND g.modality = {p('modality')}" if modality else "")
        + (f" AND b.device_key = {p('device_id')}" if device_id else ""),
        # B: the other buckets, exactly
        exact("s.device_id = b.device_key", "b.device_key",  # (where: its parameter after the subquery's)
              lambda: f"b.device_key = {p('device_id')}" if device_id else "b.device_key <> 0"),
    ]
    if not device_id:
        parts.append(exact("s.device_id IS NULL", "0", lambda: "b.device_key = 0"))
    # C: studies newer than the watermark (in no summary yet)
    parts.append(
        f"SELECT 1, COALESCE(s.device_id, 0), s.procedure_modality, s.study_description, 1, {study_cols} "
        f"FROM {study} s WHERE s.id > COALESCE((SELECT max_study_id FROM {state} WHERE id = 1), 0) "
        f"AND {in_period('s.study_datetime')} AND s.has_ionising_dose AND s.not_patient_reason = ''"
        + (f" AND s.procedure_modality = {p('modality')}" if modality else "")
        + (f" AND s.device_id = {p('device_id')}" if device_id else "")
    )
    out_cols = ", ".join(f"u.{qn(f'{q}_{x}')}" for q in SUMMARY_QUANTITIES for x in SUMMARY_SUFFIXES)
    sql = (f"SELECT u.src, u.device_key, u.modality, pm.standard_name_id, u.n_studies, {out_cols}, u.descr, "
           f"u.age_class, sn.name, sn.modality "
           f"FROM ({' UNION ALL '.join(parts)}) u "
           f"LEFT JOIN {mapping} pm ON pm.source_name = u.descr AND pm.modality = u.modality "
           f"LEFT JOIN {std_name} sn ON sn.id = pm.standard_name_id")
    return sql, names


def audit_groups(*, since: datetime, until: datetime, modality: str = "", device_id: int | None = None,
                 ) -> dict[AuditKey, GroupSummary]:
    """{AuditKey: GroupSummary} of the ionising studies with since <= study_datetime < until (one query).

    A mapped name's studies are one group per device whatever their vendor descriptions (description ""); an
    unmapped name is a group of its own per device (its vendor study description, exact), so the audit means
    something before anything is mapped: a scanner's head, chest and coronary CTA never share a median. The
    descriptions mapped to any name of an age-band family (``age_bands.FAMILIES``) are one family per device,
    split into the bands of the patients' ages, plus a group of the studies whose age is unknown."""
    sql, names = _sql(modality=modality, device_id=device_id)
    adapt = connection.ops.adapt_datetimefield_value
    values = {"since": adapt(since), "until": adapt(until), "modality": modality, "device_id": device_id}
    groups: dict[AuditKey, GroupSummary] = {}
    offsets = [(q, 5 + 5 * i) for i, q in enumerate(SUMMARY_QUANTITIES)]
    descr_col = 5 + 5 * len(SUMMARY_QUANTITIES)
    with connection.cursor() as c:
        c.execute(sql, [values[n] for n in names])
        rows = c.fetchall()
    for row in rows:
        cls, std_name, std_modality = row[descr_col + 1:descr_col + 4]
        fam = age_bands.family_of(std_name, std_modality)
        if fam is not None:
            band = age_bands.class_band(fam, cls)
            key = AuditKey(row[1] or None, None, row[2], "", fam.name, band.key if band else age_bands.UNKNOWN)
        else:
            key = AuditKey(row[1] or None, row[3], row[2], "" if row[3] else row[descr_col])
        g = groups.get(key)
        if g is None:
            g = groups[key] = GroupSummary()
        g.n += row[4]
        exact = row[0] == 1
        for q, i in offsets:
            if exact:  # one study: its value (if reported) is in the sum column
                if row[i + 1] is not None:
                    g.quantity(q).add(row[i + 1])
            elif row[i]:
                if row[i] == 1:  # a single value: sum = min = max, no need to decode its one bin
                    g.quantity(q).add(row[i + 2])
                else:
                    g.quantity(q).merge_encoded(row[i], row[i + 1], row[i + 2], row[i + 3], row[i + 4])
    return groups


def group_histogram(*, since: datetime, until: datetime, quantity: str, device_id: int | None,
                    standard_name_id: int | None, description: str = "", family: str = "", age_band: str = "",
                    max_bars: int = 40) -> dict:
    """The histogram of one audit row's quantity from the summaries (one query): up to ``max_bars`` bars
    (lower edge, upper edge, procedures) on a log scale, with the row's exact n, min and max. For the
    histogram dialog of the audit page (which today fetches the row's raw values, ``web.selectors.distribution``)."""
    if quantity not in SUMMARY_QUANTITIES:
        raise ValueError(f"unknown quantity {quantity}")
    merged = Summary()
    for (dev, std, _, descr, fam, band), g in audit_groups(since=since, until=until, device_id=device_id).items():
        s = g.quantities.get(quantity)
        if s is not None and std == standard_name_id and (device_id or None) == dev and (fam, band) == (family, age_band) \
                and (standard_name_id or family or descr == description):
            merged.merge(s)
    return {"quantity": quantity, "n": merged.n, "min": merged.minimum, "max": merged.maximum,
            "bars": merged.histogram(max_bars=max_bars)}
