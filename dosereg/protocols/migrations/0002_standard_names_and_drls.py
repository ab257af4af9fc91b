"""StandardName, ProtocolMapping, DRLSet and DRLValue move here from the web app: state only, the tables
(web_*) stay as they are.

The web app's 0004 removes them from its state; their content types are relabelled (web -> protocols) so
that existing permissions and admin log entries keep pointing at them.
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ("standardname", "protocolmapping", "drlset", "drlvalue")


def relabel_content_types(old: str, new: str):
    def run(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        db = schema_editor.connection.alias
        for model in MOVED:
            if not ContentType.objects.using(db).filter(app_label=new, model=model).exists():
                ContentType.objects.using(db).filter(app_label=old, model=model).update(app_label=new)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("protocols", "0001_initial"),
        ("web", "0003_site_assignment"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="DRLSet",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=128, unique=True)),
                        ("country", models.CharField(blank=True, default="", max_length=32)),
                        ("year", models.IntegerField(blank=True, null=True)),
                        ("citation", models.TextField()),
                        ("url", models.URLField(blank=True, default="", max_length=512)),
                        ("active", models.BooleanField(default=True)),
                    ],
                    options={
                        "db_table": "web_drlset",
                        "ordering": ["name"],
                    },
                ),
                migrations.CreateModel(
                    name="StandardName",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("name", models.CharField(max_length=128)),
                        ("modality", models.CharField(max_length=8)),
                        ("notes", models.CharField(blank=True, default="", max_length=256)),
                    ],
                    options={
                        "db_table": "web_standardname",
                        "ordering": ["modality", "name"],
                        "constraints": [models.UniqueConstraint(fields=("modality", "name"), name="uniq_standard_name")],
                    },
                ),
                migrations.CreateModel(
                    name="ProtocolMapping",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("modality", models.CharField(max_length=8)),
                        ("source_name", models.CharField(max_length=256)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("updated_by", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
                        ("standard_name", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="mappings", to="protocols.standardname")),
                    ],
                    options={
                        "db_table": "web_protocolmapping",
                        "indexes": [models.Index(fields=["source_name"], name="web_protoco_source__9eaf59_idx")],
                        "constraints": [models.UniqueConstraint(fields=("modality", "source_name"), name="uniq_protocol_mapping")],
                    },
                ),
                migrations.CreateModel(
                    name="DRLValue",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("quantity", models.CharField(choices=[("dap_total_gy_cm2", "KAP (Gy·cm²)"), ("dose_rp_max_plane_gy", "Ka,r (Gy)"), ("fluoro_time_total_s", "Fluoroscopy time (s)"), ("ctdivol_max_mgy", "CTDIvol (mGy)"), ("dlp_total_mgy_cm", "DLP (mGy·cm)")], max_length=32)),
                        ("value", models.FloatField()),
                        ("exam_label", models.CharField(blank=True, default="", max_length=128)),
                        ("notes", models.CharField(blank=True, default="", max_length=256)),
                        ("drl_set", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="values", to="protocols.drlset")),
                        ("standard_name", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="drl_values", to="protocols.standardname")),
                    ],
                    options={
                        "db_table": "web_drlvalue",
                        "constraints": [models.UniqueConstraint(fields=("drl_set", "standard_name", "quantity"), name="uniq_drl_value")],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_types("web", "protocols"), relabel_content_types("protocols", "web")),
    ]
