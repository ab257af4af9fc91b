from django.db import migrations

from dosereg.exposure.constants import RSO_GROUP


def seed(apps, schema_editor):
    from dosereg.exposure.seed import DEFAULT_FACTORS, DEFAULT_RULES

    Group = apps.get_model("auth", "Group")
    RuleSet = apps.get_model("exposure", "RuleSet")
    Rule = apps.get_model("exposure", "Rule")
    Factor = apps.get_model("exposure", "EffectiveDoseFactor")
    Group.objects.get_or_create(name=RSO_GROUP)
    if not RuleSet.objects.exists():
        from django.utils import timezone

        rs = RuleSet.objects.create(name="default", version=1, active=True, activated_at=timezone.now(),
                                    note="Defaults from dose-standards.md §4, §5, §9 (seeded by migration)")
        Rule.objects.bulk_create([Rule(ruleset=rs, **spec) for spec in DEFAULT_RULES])
    for fs, kind, region, age, value, unit, source, ver in DEFAULT_FACTORS:
        Factor.objects.get_or_create(factor_set=fs, kind=kind, region=region, age_bracket=age,
                                     defaults={"value": value, "unit": unit, "source": source, "verification": ver})


class Migration(migrations.Migration):
    dependencies = [("exposure", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
