# The worklist's search by patient ID / name and staff name through trigram indexes (PostgreSQL only; see
# dosereg/cases/worklist_indexes.py).
from django.db import migrations

from dosereg.cases.worklist_indexes import create_search_indexes, drop_search_indexes


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0005_reminders_and_worklist_indexes'),
        ('registry', '0004_study_not_patient_reason'),
        ('staff', '0003_lens_single_year_max'),
    ]

    operations = [
        migrations.RunPython(create_search_indexes, drop_search_indexes),
    ]
