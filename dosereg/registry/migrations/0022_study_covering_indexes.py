"""Covering indexes for the study browser (issue 17), the same number of indexes as before (no more writes per
ingested study):

- the device's studies ``(device, date, id)`` and the sex copy's ``(sex, date, id)`` include the modality: the walk
  of the sorts by site, device and sex reads a device (a sex) without studies of a filtered modality from the index
  alone, so a modality filter no longer falls back to sorting every study of that modality joined to its device
  (89 ms of SQL at 100k studies); ``id`` joins the device index's key, the walk's tie-break;
- the standard-name sort indexes include ``standard_name``: PostgreSQL reads an expression index (``LOWER(...)``)
  without its table only when the column is in it, so a keyset page's "rows before the cursor" is a count of an
  index range (7 ms at 100k studies) instead of ``LOWER()`` of every study in a sequential scan (48 ms).

INCLUDE is PostgreSQL's: on SQLite (the embedded default) Django builds the key columns (settings silences
models.W040); the standard-name indexes are PostgreSQL-only, as in 0014.
"""
from django.db import migrations, models

from dosereg.registry.pg_indexes import postgres_only

STANDARD = {  # name: (columns as in 0014, with the column included)
    "registry_study_sort_standard_desc": "(LOWER(standard_name) DESC NULLS LAST, id DESC)",
    "registry_study_sort_standard_asc": "(LOWER(standard_name) ASC NULLS LAST, id ASC)",
}


def _standard(include: bool) -> list[str]:
    out = []
    for name, cols in STANDARD.items():
        out += [f"DROP INDEX IF EXISTS {name}",
                f"CREATE INDEX {name} ON registry_study {cols}" + (" INCLUDE (standard_name)" if include else "")]
    return out


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0021_analyze_study'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='study',
            index=models.Index(fields=['device', 'study_datetime', 'id'], include=('procedure_modality',), name='study_device_date'),
        ),
        migrations.RemoveIndex(
            model_name='study',
            name='registry_st_device__e592d2_idx',
        ),
        migrations.RemoveIndex(
            model_name='study',
            name='study_sex_date',
        ),
        migrations.AddIndex(
            model_name='study',
            index=models.Index(fields=['patient_sex', 'study_datetime', 'id'], include=('procedure_modality',), name='study_sex_date'),
        ),
        migrations.RunPython(postgres_only(*_standard(True)), postgres_only(*_standard(False))),
    ]
