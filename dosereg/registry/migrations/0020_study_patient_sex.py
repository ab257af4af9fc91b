"""The patient record's sex as a column of the study (``Study.patient_sex``, kept by the registry) with the
(sex, date) index the study browser's sort by sex walks; filled from the patient records here."""
from django.db import migrations, models


def fill(apps, schema_editor) -> None:
    Study = apps.get_model("registry", "Study")
    Patient = apps.get_model("registry", "Patient")
    qn = schema_editor.quote_name
    study, patient = qn(Study._meta.db_table), qn(Patient._meta.db_table)
    # one statement; studies without a patient keep ""
    schema_editor.execute(
        f"UPDATE {study} SET patient_sex = (SELECT p.sex FROM {patient} p WHERE p.id = {study}.patient_id) "
        f"WHERE patient_id IS NOT NULL")


class Migration(migrations.Migration):

    dependencies = [
        ("registry", "0019_study_unmapped_index"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="patient_sex",
            field=models.CharField(blank=True, default="", max_length=4),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="study",
            index=models.Index(fields=["patient_sex", "study_datetime", "id"], name="study_sex_date"),
        ),
    ]
