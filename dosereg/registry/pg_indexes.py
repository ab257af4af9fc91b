"""Migration helpers for indexes that only PostgreSQL has (NULLS LAST orders, pg_trgm trigram indexes): created
there, outside the models' state, and skipped elsewhere (SQLite, the embedded default, cannot create them).

One home for every app's migrations (registry, exposure, cases)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


def postgres_only(*statements: str) -> Callable:
    """A RunPython function executing ``statements`` on PostgreSQL and nothing elsewhere."""
    def run(apps, schema_editor) -> None:
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)
    return run


def trigram_index_sql(indexes: Iterable[tuple[str, str, str]]) -> list[str]:
    """GIN pg_trgm indexes over ``UPPER(column::text)``: the expression Django's ``icontains`` / ``istartswith``
    read on PostgreSQL, so the index serves them as written. ``indexes``: (name, table, column)."""
    return [f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (UPPER({column}::text) gin_trgm_ops)"
            for name, table, column in indexes]


def trigram_indexes(indexes: Iterable[tuple[str, str, str]], what: str) -> tuple[Callable, Callable]:
    """RunPython (create, drop) for trigram indexes: pg_trgm first (a trusted extension, PostgreSQL 13+: a database
    owner may create it); where the role still may not, ``what`` stays correct but unindexed and a warning says so."""
    indexes = list(indexes)

    def create(apps, schema_editor) -> None:
        from django.db import transaction

        if schema_editor.connection.vendor != "postgresql":
            return
        try:
            with transaction.atomic(using=schema_editor.connection.alias):
                schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        except Exception as exc:  # noqa: BLE001 - a role without the right: correct, only slower
            log.warning("pg_trgm could not be created (%s): %s is not indexed", exc, what)
            return
        for sql in trigram_index_sql(indexes):
            schema_editor.execute(sql)

    drop = postgres_only(*[f"DROP INDEX IF EXISTS {name}" for name, _, _ in indexes])
    return create, drop
