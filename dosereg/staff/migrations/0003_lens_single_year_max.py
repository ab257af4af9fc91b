"""Seed the eye-lens single-year maximum (ICRP 118): the effective-dose one is in 0002; both are now alerted."""
from django.db import migrations

CITATION = ("ICRP 118 (2011) eye lens: 20 mSv/y averaged over defined 5-year periods, with no single year above "
            "50 mSv. dose-standards.md §6.1")


def seed(apps, schema_editor):
    apps.get_model("staff", "StaffSetting").objects.get_or_create(
        key="limit.lens.single_year_max", regime="icrp", site=None, version=1,
        defaults={"value": 50.0, "unit": "mSv/y", "citation": CITATION, "verification": "✔", "note": ""},
    )


def unseed(apps, schema_editor):
    apps.get_model("staff", "StaffSetting").objects.filter(key="limit.lens.single_year_max", version=1, site__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("staff", "0002_seed_defaults")]
    operations = [migrations.RunPython(seed, unseed)]
