"""More study-browser sort indexes (issue 17, after measuring 0012 at 1M events / 100k studies): the study
description (sorted case-insensitively, as ``Lower(study_description)``) and the modality, both directions, NULLS
LAST with the id tie-break as the browser orders them. PostgreSQL only (see 0012)."""
from django.db import migrations

from dosereg.registry.pg_indexes import postgres_only

INDEXES = {
    "registry_study_sort_description_desc": "(LOWER(study_description) DESC NULLS LAST, id DESC)",
    "registry_study_sort_description_asc": "(LOWER(study_description) ASC NULLS LAST, id ASC)",
    "registry_study_sort_modality_desc": "(procedure_modality DESC NULLS LAST, id DESC)",
    "registry_study_sort_modality_asc": "(procedure_modality ASC NULLS LAST, id ASC)",
}


class Migration(migrations.Migration):
    dependencies = [("registry", "0012_study_browser_sort_indexes")]
    operations = [migrations.RunPython(
        postgres_only(*[f"CREATE INDEX IF NOT EXISTS {name} ON registry_study {cols}" for name, cols in INDEXES.items()]),
        postgres_only(*[f"DROP INDEX IF EXISTS {name}" for name in INDEXES]))]
