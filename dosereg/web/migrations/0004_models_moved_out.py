"""The site assignments moved to the access app, the protocol names, mappings and DRLs to the protocols app
(their 0001 / 0002 take them over): removed from the web app's state only, the tables stay."""
from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ("web", "0003_site_assignment"),
        ("access", "0001_initial"),
        ("protocols", "0002_standard_names_and_drls"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="AssignedSite"),
                migrations.DeleteModel(name="SiteAssignment"),
                migrations.DeleteModel(name="DRLValue"),
                migrations.DeleteModel(name="ProtocolMapping"),
                migrations.DeleteModel(name="DRLSet"),
                migrations.DeleteModel(name="StandardName"),
            ],
            database_operations=[],
        ),
    ]
