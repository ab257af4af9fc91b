from django.db import migrations


def forwards(apps, schema_editor):
    from dosereg.web.seeds import seed_all

    seed_all(apps, drl_app="web")  # the models were in the web app when this migration was written


class Migration(migrations.Migration):
    dependencies = [
        ("web", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
