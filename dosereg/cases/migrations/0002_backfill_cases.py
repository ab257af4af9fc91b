"""Every alert raised before cases existed joins a case (no e-mail is sent)."""
from django.db import migrations


def forwards(apps, schema_editor):
    from dosereg.cases.backfill import backfill

    backfill(apps.get_model("cases", "Case"), apps.get_model("cases", "CaseAlert"), apps.get_model("cases", "CaseEvent"),
             apps.get_model("exposure", "Alert"), apps.get_model("staff", "StaffAlert"))


class Migration(migrations.Migration):
    dependencies = [("cases", "0001_initial")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
