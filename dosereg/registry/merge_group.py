"""The one merge-group function: which patient records make up one patient's history.

A merged record keeps its studies and points at the record it was merged into (``Patient.merged_into``);
merges chain (A into B, then B into C), so a record's group is itself plus every record merged into it
**directly or transitively**. Cumulative exposure, alerts, the history page, the portal and the API all use
these two functions, so C's totals and C's exam list always cover the same studies.
"""
from __future__ import annotations

from django.db import connection

from .models import Patient


def patient_root_id(patient_id: int) -> int:
    """The surviving record a (possibly merged) patient points at, following the chain (1 query)."""
    table = connection.ops.quote_name(Patient._meta.db_table)
    sql = (
        f"WITH RECURSIVE chain(id, merged_into_id, depth) AS ("
        f" SELECT id, merged_into_id, 0 FROM {table} WHERE id = %s"
        f" UNION ALL SELECT p.id, p.merged_into_id, c.depth + 1 FROM {table} p JOIN chain c ON p.id = c.merged_into_id"
        f" WHERE c.depth < 1000)"
        f" SELECT id FROM chain ORDER BY depth DESC LIMIT 1"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [patient_id])
        row = cur.fetchone()
    return row[0] if row else patient_id


def patient_group_ids(patient_id: int) -> list[int]:
    """``patient_id`` first, then every record merged into it directly or transitively (1 query).

    (UNION, not UNION ALL: a pointer cycle, which a merge service refuses, still terminates.)"""
    table = connection.ops.quote_name(Patient._meta.db_table)
    sql = (
        f"WITH RECURSIVE grp(id) AS (SELECT CAST(%s AS BIGINT)"
        f" UNION SELECT p.id FROM {table} p JOIN grp g ON p.merged_into_id = g.id)"
        f" SELECT id FROM grp"
    )
    with connection.cursor() as cur:
        cur.execute(sql, [patient_id])
        rest = sorted(r[0] for r in cur.fetchall() if r[0] != patient_id)
    return [patient_id, *rest]
