# The worklist's search by patient ID through a btree prefix index instead of a trigram index (PostgreSQL only; see
# dosereg/cases/worklist_indexes.py): registry_patient keeps as many indexes as before.
from django.db import migrations

from dosereg.cases.worklist_indexes import PATIENT_ID_PREFIX_INDEX, PATIENT_ID_PREFIX_SQL
from dosereg.registry.pg_indexes import postgres_only


def restore_trigram(apps, schema_editor) -> None:
    """Back to 0006's trigram index on patient_id (where pg_trgm is there: 0006 skips it without)."""
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {PATIENT_ID_PREFIX_INDEX}")
    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cur.fetchone():
            schema_editor.execute("CREATE INDEX IF NOT EXISTS search_patient_id_trgm ON registry_patient "
                                  "USING gin (UPPER(patient_id::text) gin_trgm_ops)")


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0007_case_counts'),
    ]

    operations = [
        migrations.RunPython(postgres_only("DROP INDEX IF EXISTS search_patient_id_trgm", PATIENT_ID_PREFIX_SQL),
                             restore_trigram),
    ]
