"""The worklist's ordered partial indexes (active cases by severity, then exam date newest first, NULLS LAST).

NULLS LAST in an index is PostgreSQL's: migrations create these there only, outside the models' state (SQLite,
the embedded default, cannot create them)."""
from __future__ import annotations

ACTIVE = "status IN ('open', 'acknowledged', 'follow_up')"


def index_sql(name: str, lead: str = "") -> str:
    return (f"CREATE INDEX IF NOT EXISTS {name} ON cases_case ({lead}sort_rank DESC, exam_date DESC NULLS LAST, "
            f"id DESC) WHERE {ACTIVE}")


def postgres_only(*statements: str):
    """A RunPython function executing ``statements`` on PostgreSQL and nothing elsewhere."""
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)
    return run
