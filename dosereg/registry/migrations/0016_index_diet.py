"""Fewer indexes on the tables every ingest writes (issues 13 and 17: each index is one more write per ingested
study, event and dose object; sustained ingest measured slower than before the study browser's indexes).

Dropped, each served by another index that leads with the same columns:
- registry_study: patient_id, device_id (the (patient, date) and (device, date) indexes), study_datetime and the
  browser's ``sort_study_datetime_asc`` (both replaced by ``study_datetime_id``, the same (date, id) order, on
  SQLite too), the descending description and modality sort indexes (NOT NULL columns: the browser orders them
  without a NULLS clause, so the ascending index is read backwards), and the study UID's ``varchar_pattern_ops``
  copy (no query matches a UID by prefix; the unique index answers equality);
- registry_doseobject: status (``(status, received_at)``), sop_instance_uid (``uniq_object_content``) and their
  pattern-ops copies;
- registry_irradiationevent: study_id (``uniq_event_per_study`` (study, irradiation_event_uid)).
"""
import django.db.models.deletion
from django.db import migrations, models

from dosereg.registry.pg_indexes import postgres_only

DROPPED = {
    "registry_study_sort_study_datetime_asc": "ON registry_study (study_datetime ASC NULLS LAST, id ASC)",
    "registry_study_sort_description_desc": "ON registry_study (LOWER(study_description) DESC NULLS LAST, id DESC)",
    "registry_study_sort_modality_desc": "ON registry_study (procedure_modality DESC NULLS LAST, id DESC)",
    "registry_study_study_instance_uid_2f48e93a_like": "ON registry_study (study_instance_uid varchar_pattern_ops)",
}


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0015_merge_20261206_0033'),
    ]

    operations = [
        migrations.AlterField(
            model_name='doseobject',
            name='sop_instance_uid',
            field=models.CharField(max_length=128),
        ),
        migrations.AlterField(
            model_name='doseobject',
            name='status',
            field=models.CharField(choices=[('received', 'received'), ('ingested', 'ingested'), ('quarantined', 'quarantined'), ('not_dose_object', 'not_dose_object')], default='received', max_length=16),
        ),
        migrations.AlterField(
            model_name='irradiationevent',
            name='study',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='registry.study'),
        ),
        migrations.AlterField(
            model_name='study',
            name='device',
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='studies', to='registry.device'),
        ),
        migrations.AlterField(
            model_name='study',
            name='patient',
            field=models.ForeignKey(db_index=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='studies', to='registry.patient'),
        ),
        migrations.AlterField(
            model_name='study',
            name='study_datetime',
            field=models.DateTimeField(null=True),
        ),
        migrations.AddIndex(
            model_name='study',
            index=models.Index(fields=['study_datetime', 'id'], name='study_datetime_id'),
        ),
        migrations.RunPython(
            postgres_only(*[f"DROP INDEX IF EXISTS {name}" for name in DROPPED]),
            postgres_only(*[f"CREATE INDEX IF NOT EXISTS {name} {on}" for name, on in DROPPED.items()])),
    ]
