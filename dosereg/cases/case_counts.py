"""The worklist's counts kept by PostgreSQL (``models.CaseCount``): the trigger, its first fill, the compaction.

Counting the active cases (90 % of 100,000) took one scan of them on every worklist page and on the dashboard,
growing with the registry. The trigger records each change of a case's counted key as two delta rows (-1 old
key, +1 new key); reading sums the deltas. ``compact`` (beat, every minute) replaces the deltas by one row per key
in one statement: a concurrent writer's rows committed after its snapshot are left for the next run, so no count
is lost or doubled, and writers never wait for it.
"""
from __future__ import annotations

from django.db import connection, transaction

KEY = "site, kind, severity, status, notify_state"

TRIGGER_SQL = f"""
CREATE OR REPLACE FUNCTION cases_case_count_delta() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.site, OLD.kind, OLD.severity, OLD.status, OLD.notify_state)
                            IS NOT DISTINCT FROM (NEW.site, NEW.kind, NEW.severity, NEW.status, NEW.notify_state) THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        INSERT INTO cases_casecount ({KEY}, n) VALUES (OLD.site, OLD.kind, OLD.severity, OLD.status, OLD.notify_state, -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO cases_casecount ({KEY}, n) VALUES (NEW.site, NEW.kind, NEW.severity, NEW.status, NEW.notify_state, 1);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS cases_case_count ON cases_case;
CREATE TRIGGER cases_case_count AFTER INSERT OR UPDATE OR DELETE ON cases_case
    FOR EACH ROW EXECUTE FUNCTION cases_case_count_delta();
"""
FILL_SQL = f"""
LOCK TABLE cases_case IN SHARE ROW EXCLUSIVE MODE;
DELETE FROM cases_casecount;
INSERT INTO cases_casecount ({KEY}, n) SELECT {KEY}, count(*) FROM cases_case GROUP BY {KEY};
"""
DROP_SQL = "DROP TRIGGER IF EXISTS cases_case_count ON cases_case; DROP FUNCTION IF EXISTS cases_case_count_delta();"
COMPACT_SQL = f"""
WITH gone AS (DELETE FROM cases_casecount RETURNING {KEY}, n)
INSERT INTO cases_casecount ({KEY}, n) SELECT {KEY}, SUM(n) FROM gone GROUP BY {KEY} HAVING SUM(n) <> 0
"""


def kept() -> bool:
    """Whether the database keeps the counts (PostgreSQL, where migration 0007 created the trigger)."""
    return connection.vendor == "postgresql"


def install(apps, schema_editor) -> None:
    """Migration: the trigger and the counts of the cases already there (PostgreSQL only)."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FILL_SQL)
        schema_editor.execute(TRIGGER_SQL)


def uninstall(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL)


def compact() -> int:
    """Fold the deltas into one row per key; returns the rows left. No-op without the trigger."""
    if not kept():
        return 0
    with transaction.atomic(), connection.cursor() as c:
        c.execute(COMPACT_SQL)
        c.execute("SELECT count(*) FROM cases_casecount")
        row = c.fetchone()
    return int(row[0]) if row else 0
