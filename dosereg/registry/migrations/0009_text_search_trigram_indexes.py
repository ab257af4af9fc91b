"""Trigram indexes for the study browser's "protocol or study name contains" filter (issue 17).

``icontains`` on PostgreSQL is ``UPPER(col::text) LIKE UPPER('%text%')``: no b-tree helps, so each search read
every irradiation event (1M rows at the registry's benchmark size). A GIN index of pg_trgm trigrams over the
same ``UPPER(col::text)`` expression answers it. PostgreSQL only (SQLite, the embedded default, has no pg_trgm);
where the extension cannot be created (a managed server that refuses it) the filter still works, unindexed,
and a warning says so."""
from django.db import migrations

from dosereg.registry.pg_indexes import trigram_indexes

INDEXES = (
    ("registry_ev_protocol_trgm", "registry_irradiationevent", "protocol"),
    ("registry_st_description_trgm", "registry_study", "study_description"),
)
create, drop = trigram_indexes(INDEXES, "the study browser's text filter")


class Migration(migrations.Migration):
    dependencies = [("registry", "0008_merge_20261205_1850")]
    operations = [migrations.RunPython(create, drop)]
