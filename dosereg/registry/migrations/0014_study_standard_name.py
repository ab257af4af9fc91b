"""The study's resolved standard name (issue 17: the study browser's standard-name sort resolved the mapping per
study, 896 ms at 100k studies): a column, filled by the protocols app (its migration 0004 back-fills it; its
services keep it), with the browser's two sort indexes on it (PostgreSQL only, NULLS LAST and the id tie-break as
the browser orders, see 0012)."""
from django.db import migrations, models

from dosereg.registry.pg_indexes import postgres_only

INDEXES = {
    "registry_study_sort_standard_desc": "(LOWER(standard_name) DESC NULLS LAST, id DESC)",
    "registry_study_sort_standard_asc": "(LOWER(standard_name) ASC NULLS LAST, id ASC)",
}


class Migration(migrations.Migration):
    dependencies = [("registry", "0013_study_browser_text_sort_indexes")]
    operations = [
        migrations.AddField(model_name="study", name="standard_name",
                            field=models.CharField(blank=True, max_length=128, null=True)),
        migrations.RunPython(
            postgres_only(*[f"CREATE INDEX IF NOT EXISTS {n} ON registry_study {cols}" for n, cols in INDEXES.items()]),
            postgres_only(*[f"DROP INDEX IF EXISTS {n}" for n in INDEXES])),
    ]
