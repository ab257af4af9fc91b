from django.db import migrations


def forwards(apps, schema_editor):
    from dosereg.cases.incidents_seed import seed

    seed(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("cases", "0003_incident_register")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
