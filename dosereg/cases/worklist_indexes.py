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


# The worklist's search by patient (ID prefix, name) and staff name (selectors.Filters.q): Django's istartswith /
# icontains read UPPER(column::text) LIKE '...%' / '%...%', which these trigram indexes (pg_trgm) serve as written:
# the search reads the matching patients through the index instead of scanning every patient.
SEARCH_INDEXES = (
    ("search_patient_id_trgm", "registry_patient", "patient_id"),
    ("search_patient_name_trgm", "registry_patient", "name"),
    ("search_staff_name_trgm", "staff_staffmember", "name"),
)


def search_index_sql() -> list[str]:
    return [f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (UPPER({column}::text) gin_trgm_ops)"
            for name, table, column in SEARCH_INDEXES]


def search_index_drop_sql() -> list[str]:
    return [f"DROP INDEX IF EXISTS {name}" for name, _, _ in SEARCH_INDEXES]


def create_search_indexes(apps, schema_editor) -> None:
    """pg_trgm and the search indexes, on PostgreSQL. pg_trgm is a trusted extension (PostgreSQL 13+: a database
    owner may create it); where the role still may not, the search works unindexed and a warning says so."""
    import logging

    from django.db import transaction

    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # a role without the right: the search stays correct, only slower
        logging.getLogger(__name__).warning("pg_trgm could not be created (%s): the worklist's search is not indexed", exc)
        return
    for sql in search_index_sql():
        schema_editor.execute(sql)


def drop_search_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for sql in search_index_drop_sql():
            schema_editor.execute(sql)
