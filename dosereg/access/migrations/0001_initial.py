"""SiteAssignment and AssignedSite move here from the web app: state only, the tables (web_*) stay as they are.

The web app's 0004 removes them from its state; their content types are relabelled (web -> access) so that
existing permissions and admin log entries keep pointing at them.
"""
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MOVED = ("siteassignment", "assignedsite")


def relabel_content_types(old: str, new: str):
    def run(apps, schema_editor):
        ContentType = apps.get_model("contenttypes", "ContentType")
        db = schema_editor.connection.alias
        for model in MOVED:
            if not ContentType.objects.using(db).filter(app_label=new, model=model).exists():
                ContentType.objects.using(db).filter(app_label=old, model=model).update(app_label=new)

    return run


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ("web", "0003_site_assignment"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SiteAssignment",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("all_sites", models.BooleanField(default=False, help_text="Every site, present and future (the listed sites are then ignored).")),
                        ("note", models.CharField(blank=True, default="", max_length=256)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("user", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name="site_assignment", to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        "verbose_name": "site assignment",
                        "db_table": "web_siteassignment",
                    },
                ),
                migrations.CreateModel(
                    name="AssignedSite",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("institution", models.CharField(max_length=256)),
                        ("assignment", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="sites", to="access.siteassignment")),
                    ],
                    options={
                        "db_table": "web_assignedsite",
                        "constraints": [models.UniqueConstraint(fields=("assignment", "institution"), name="uniq_assigned_site")],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(relabel_content_types("web", "access"), relabel_content_types("access", "web")),
    ]
