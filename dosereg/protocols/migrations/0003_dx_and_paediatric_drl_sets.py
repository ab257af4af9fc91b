from django.db import migrations


def seed(apps, schema_editor):
    from dosereg.protocols.drl_seeds import seed_unverified_sets

    seed_unverified_sets(apps)


class Migration(migrations.Migration):
    dependencies = [("protocols", "0002_standard_names_and_drls")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
