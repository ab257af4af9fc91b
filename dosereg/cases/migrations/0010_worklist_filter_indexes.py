# The worklist filtered by device, modality, exam-date range or rule through their own indexes on cases_case (PostgreSQL
# only; see dosereg/cases/worklist_indexes.py).
from django.db import migrations

from dosereg.cases.worklist_indexes import DEVICE_MODALITY_INDEXES, EXAM_SITE_SQL, RULE_KEYS_TRGM_SQL, index_sql
from dosereg.registry.pg_indexes import postgres_only


def create_rule_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        if cur.fetchone():
            schema_editor.execute(RULE_KEYS_TRGM_SQL)


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0009_case_counts_device_modality'),
    ]

    operations = [
        migrations.RunPython(postgres_only(*[index_sql(name, lead) for name, lead in DEVICE_MODALITY_INDEXES], EXAM_SITE_SQL),
                             postgres_only(*[f"DROP INDEX IF EXISTS {name}" for name, _ in DEVICE_MODALITY_INDEXES],
                                           "DROP INDEX IF EXISTS case_exam_site")),
        migrations.RunPython(create_rule_index, postgres_only("DROP INDEX IF EXISTS case_rule_keys_trgm")),
    ]
