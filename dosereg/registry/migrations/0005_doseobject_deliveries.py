from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("registry", "0004_study_not_patient_reason")]

    operations = [
        migrations.AddField(model_name="doseobject", name="deliveries", field=models.IntegerField(default=0)),
    ]
