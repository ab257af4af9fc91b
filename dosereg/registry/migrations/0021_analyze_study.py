"""Statistics for the study columns and partial indexes that 0005-0020 added (flags, standard_name, patient_sex, protocol
names...), taken at once on PostgreSQL instead of whenever autovacuum next analyzes the table.

Without them the planner guesses: on a registry upgraded from the 2026-12-03 schema (100,000 studies, none
flagged) it judged that nearly every study was flagged (``flags <> '[]'``: no statistics for the new column) and
walked the date index through every study to fill the dashboard's data-quality list (298 ms) instead of reading
the empty partial index ``study_flagged_recent``. A server with autovacuum off, or a busy one, keeps such plans
until someone runs ANALYZE. ANALYZE reads a sample (about 30,000 rows), not the table: about a second at 1M
events. Elsewhere (SQLite) nothing to do.
"""
from django.db import migrations


def analyze(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    Study = apps.get_model("registry", "Study")
    if not Study.objects.exists():  # a new registry: nothing to take statistics of (and statistics of an empty
        return                       # table would make the planner read it as empty until the next ANALYZE)
    schema_editor.execute(f"ANALYZE {schema_editor.quote_name(Study._meta.db_table)}")


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0020_study_patient_sex"),
    ]

    operations = [
        migrations.RunPython(analyze, migrations.RunPython.noop, elidable=True),
    ]
