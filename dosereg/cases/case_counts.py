"""The worklist's counts kept by PostgreSQL (``models.CaseCount``): the trigger, its first fill, the compaction.

Counting the active cases (90 % of 100,000) took one scan of them on every worklist page and on the dashboard,
growing with the registry. The trigger records each change of a case's counted key as two delta rows (-1 old
key, +1 new key); reading sums the deltas. ``compact`` (beat, every minute) replaces the deltas by one row per key
in one statement: a concurrent writer's rows committed after its snapshot are left for the next run, so no count
is lost or doubled, and writers never wait for it.
"""
from __future__ import annotations

from django.db import connection, transaction

# the counted key: migration 0007 kept (site, kind, severity, status, notify_state); 0009 added the device and the
# modality, so that the worklist's device and modality filters read their totals here too (a device sits at one site
# and has one modality, so the rows stay about as many as devices x kinds x severities x statuses)
KEY_0007 = ("site", "kind", "severity", "status", "notify_state")
KEY_COLUMNS = KEY_0007 + ("device_id", "modality")
KEY = ", ".join(KEY_COLUMNS)
# the rule filter's counts (0011, ``models.CaseRuleCount``): one delta row per rule of the case's ``rule_keys``
RULE_KEY_COLUMNS = ("site", "kind", "severity", "status")
RULE_KEY = ", ".join(RULE_KEY_COLUMNS) + ", rule_key"


def rules_of(row: str) -> str:
    """SQL: the rules of ``row``'s ``rule_keys`` (",a,b,"), each once: the texts between two commas, as the worklist's
    filter (``rule_keys LIKE '%,a,%'``) reads them (a text cut off at 1024 characters without its closing comma is
    no rule)."""
    parts = f"string_to_array({row}.rule_keys, ',')"
    return f"(SELECT DISTINCT r FROM unnest(({parts})[2:array_length({parts}, 1) - 1]) r WHERE r <> '')"


def trigger_sql(columns: tuple[str, ...] = KEY_COLUMNS, rules: bool = True) -> str:
    """The trigger function: the deltas of ``columns`` (and with ``rules``, of each rule) on every change of them."""
    def row(prefix: str, cols) -> str:
        return ", ".join(f"{prefix}.{c}" for c in cols)

    key = ", ".join(columns)
    changed = f"({row('OLD', columns)}) IS DISTINCT FROM ({row('NEW', columns)})"
    old_rules = new_rules = rules_changed = ""
    if rules:
        rc = RULE_KEY_COLUMNS + ("rule_keys",)
        rules_changed = f"({row('OLD', rc)}) IS DISTINCT FROM ({row('NEW', rc)})"
        old_rules = f"""
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND {rules_changed}) THEN
        INSERT INTO cases_caserulecount ({RULE_KEY}, n)
            SELECT {row('OLD', RULE_KEY_COLUMNS)}, r, -1 FROM {rules_of('OLD')} rs(r);
    END IF;"""
        new_rules = f"""
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND {rules_changed}) THEN
        INSERT INTO cases_caserulecount ({RULE_KEY}, n)
            SELECT {row('NEW', RULE_KEY_COLUMNS)}, r, 1 FROM {rules_of('NEW')} rs(r);
    END IF;"""
    return f"""
CREATE OR REPLACE FUNCTION cases_case_count_delta() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND {changed}) THEN
        INSERT INTO cases_casecount ({key}, n) VALUES ({row('OLD', columns)}, -1);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND {changed}) THEN
        INSERT INTO cases_casecount ({key}, n) VALUES ({row('NEW', columns)}, 1);
    END IF;{old_rules}{new_rules}
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS cases_case_count ON cases_case;
CREATE TRIGGER cases_case_count AFTER INSERT OR UPDATE OR DELETE ON cases_case
    FOR EACH ROW EXECUTE FUNCTION cases_case_count_delta();
"""


def fill_sql(columns: tuple[str, ...] = KEY_COLUMNS, rules: bool = True) -> str:
    key = ", ".join(columns)
    sql = f"""
LOCK TABLE cases_case IN SHARE ROW EXCLUSIVE MODE;
DELETE FROM cases_casecount;
INSERT INTO cases_casecount ({key}, n) SELECT {key}, count(*) FROM cases_case GROUP BY {key};
"""
    if rules:
        c = ", ".join(f"c.{x}" for x in RULE_KEY_COLUMNS)
        sql += f"""DELETE FROM cases_caserulecount;
INSERT INTO cases_caserulecount ({RULE_KEY}, n)
    SELECT {c}, rs.r, count(*) FROM cases_case c CROSS JOIN LATERAL {rules_of('c')} rs(r) GROUP BY {c}, rs.r;
"""
    return sql


TRIGGER_SQL = trigger_sql()
FILL_SQL = fill_sql()
DROP_SQL = "DROP TRIGGER IF EXISTS cases_case_count ON cases_case; DROP FUNCTION IF EXISTS cases_case_count_delta();"
COMPACT_SQL = f"""
WITH gone AS (DELETE FROM cases_casecount RETURNING {KEY}, n)
INSERT INTO cases_casecount ({KEY}, n) SELECT {KEY}, SUM(n) FROM gone GROUP BY {KEY} HAVING SUM(n) <> 0
"""
COMPACT_RULES_SQL = f"""
WITH gone AS (DELETE FROM cases_caserulecount RETURNING {RULE_KEY}, n)
INSERT INTO cases_caserulecount ({RULE_KEY}, n) SELECT {RULE_KEY}, SUM(n) FROM gone GROUP BY {RULE_KEY} HAVING SUM(n) <> 0
"""


def kept() -> bool:
    """Whether the database keeps the counts (PostgreSQL, where migration 0007 created the trigger)."""
    return connection.vendor == "postgresql"


def installer(columns: tuple[str, ...], rules: bool):
    """Migration: the trigger on ``columns`` (and the rules) and the counts of the cases already there, by that key
    (PostgreSQL only). Each migration names its own key, so that an older one still runs against the tables it knew."""
    def install(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(fill_sql(columns, rules))
            schema_editor.execute(trigger_sql(columns, rules))
    return install


install = installer(KEY_0007, rules=False)  # migration 0007


def uninstall(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_SQL)


def compact() -> int:
    """Fold the deltas into one row per key (the rules' too); returns the rows of the counts left. No-op without
    the trigger."""
    if not kept():
        return 0
    with transaction.atomic(), connection.cursor() as c:
        c.execute(COMPACT_SQL)
        c.execute(COMPACT_RULES_SQL)
        c.execute("SELECT count(*) FROM cases_casecount")
        row = c.fetchone()
    return int(row[0]) if row else 0
