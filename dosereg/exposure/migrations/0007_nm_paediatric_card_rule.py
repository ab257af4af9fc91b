"""The EANM paediatric dosage card as an NM/PET alert rule (issue 16), seeded DISABLED: its table is not verified
against the primary card (dosereg/exposure/eanm_card.py says what was cross-checked).

Added to the active rule set while it has raised no alert, else as a new version (a copy of the active set plus this
rule) that becomes active, as migration 0006 did; alerts keep the version that raised them."""
from django.db import migrations, models


def add_nm_rules(apps, schema_editor):
    from django.utils import timezone

    from dosereg.exposure.seed import NM_RULES

    RuleSet = apps.get_model("exposure", "RuleSet")
    Rule = apps.get_model("exposure", "Rule")
    Alert = apps.get_model("exposure", "Alert")
    active = RuleSet.objects.filter(active=True).first()
    if active is None:
        return
    keys = {spec["key"] for spec in NM_RULES}
    if Rule.objects.filter(ruleset=active, key__in=keys).exists():
        return
    target = active
    if Alert.objects.filter(rule__ruleset=active).exists():
        version = (RuleSet.objects.filter(name=active.name).order_by("-version").values_list("version", flat=True).first()
                   or 0) + 1
        target = RuleSet.objects.create(name=active.name, version=version, active=False,
                                        note="EANM paediatric dosage card rule added, disabled (issue 16; migration 0007)")
        copies = list(Rule.objects.filter(ruleset=active))
        for rule in copies:
            rule.pk = None
            rule.ruleset = target
        Rule.objects.bulk_create(copies)
        RuleSet.objects.filter(pk=active.pk).update(active=False)
        RuleSet.objects.filter(pk=target.pk).update(active=True, activated_at=timezone.now())
    Rule.objects.bulk_create([Rule(ruleset=target, **spec) for spec in NM_RULES])


class Migration(migrations.Migration):
    dependencies = [("exposure", "0006_peak_skin_dose_rules")]
    operations = [
        migrations.AlterField(
            model_name="rule", name="quantity",
            field=models.CharField(max_length=24, choices=[
                ("kar_gy", "kar_gy"), ("kap_gy_cm2", "kap_gy_cm2"), ("fluoro_time_s", "fluoro_time_s"),
                ("dlp_mgy_cm", "dlp_mgy_cm"), ("ctdivol_mgy", "ctdivol_mgy"), ("procedure_count", "procedure_count"),
                ("pregnancy", "pregnancy"), ("dose_check", "dose_check"), ("psd_gy", "psd_gy"),
                ("nm_paed_activity_mbq", "nm_paed_activity_mbq")]),
        ),
        migrations.RunPython(add_nm_rules, migrations.RunPython.noop),
    ]
