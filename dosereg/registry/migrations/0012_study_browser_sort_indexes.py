"""Indexes for the study browser's sorts (issue 17): the default "newest first" order and the dose columns'
"highest first" orders, each with NULLS LAST and the id as tie-breaker exactly as the browser orders them, so that
a page is read from the index instead of sorting every study (100k studies: a full scan and a top-N sort per page).

PostgreSQL only: NULLS LAST in an index is PostgreSQL's (SQLite, the embedded default, orders small registries
without them). Sorts on joined names (site, device) and the standard name are not indexed."""
from django.db import migrations

from dosereg.registry.pg_indexes import postgres_only

DESC_COLUMNS = ("study_datetime", "dap_total_gy_cm2", "dose_rp_max_plane_gy", "dlp_total_mgy_cm", "ctdivol_max_mgy",
                "fluoro_time_total_s", "event_count", "patient_age_years")


SQL = [f"CREATE INDEX IF NOT EXISTS registry_study_sort_{col}_desc ON registry_study ({col} DESC NULLS LAST, id DESC)"
       for col in DESC_COLUMNS]
SQL.append("CREATE INDEX IF NOT EXISTS registry_study_sort_study_datetime_asc ON registry_study "
           "(study_datetime ASC NULLS LAST, id ASC)")
DROP = [f"DROP INDEX IF EXISTS registry_study_sort_{col}_desc" for col in DESC_COLUMNS]
DROP.append("DROP INDEX IF EXISTS registry_study_sort_study_datetime_asc")


class Migration(migrations.Migration):
    dependencies = [("registry", "0011_merge_20261205_2125")]
    operations = [migrations.RunPython(postgres_only(*SQL), postgres_only(*DROP))]
