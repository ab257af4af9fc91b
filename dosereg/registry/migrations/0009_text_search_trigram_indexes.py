"""Trigram indexes for the study browser's "protocol or study name contains" filter (issue 17).

``icontains`` on PostgreSQL is ``UPPER(col::text) LIKE UPPER('%text%')``: no b-tree helps, so each search read
every irradiation event (1M rows at the registry's benchmark size). A GIN index of pg_trgm trigrams over the
same ``UPPER(col::text)`` expression answers it. PostgreSQL only (SQLite, the embedded default, has no pg_trgm);
where the extension cannot be created (a managed server that refuses it) the filter still works, unindexed,
and the migration says so."""
from django.db import migrations

INDEXES = {
    "registry_ev_protocol_trgm": "registry_irradiationevent (UPPER(protocol::text) gin_trgm_ops)",
    "registry_st_description_trgm": "registry_study (UPPER(study_description::text) gin_trgm_ops)",
}


def create(apps, schema_editor) -> None:
    conn = schema_editor.connection
    if conn.vendor != "postgresql":
        return
    from django.db import transaction

    try:
        with transaction.atomic(using=conn.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as exc:  # noqa: BLE001 - e.g. permission denied: the search stays correct, just unindexed
        print(f"\n  pg_trgm not available ({exc.__class__.__name__}: {str(exc).strip()[:120]}); "
              "the study browser's text filter stays unindexed")
        return
    for name, target in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {target.split(' ', 1)[0]} USING gin "
                              f"{target.split(' ', 1)[1]}")


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        for name in INDEXES:
            schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [("registry", "0008_merge_20261205_1850")]
    operations = [migrations.RunPython(create, drop)]
