"""Back-fill ``Study.standard_name`` (registry 0014) from the protocol mappings, as
``protocols.services.study_standard_names_refresh`` keeps it afterwards (one UPDATE)."""
from django.db import migrations
from django.db.models import Exists, OuterRef, Subquery


def backfill(apps, schema_editor) -> None:
    Study = apps.get_model("registry", "Study")
    ProtocolMapping = apps.get_model("protocols", "ProtocolMapping")
    mapped = ProtocolMapping.objects.filter(source_name=OuterRef("study_description"),
                                            modality=OuterRef("procedure_modality"))
    Study.objects.filter(Exists(mapped)).update(standard_name=Subquery(mapped.values("standard_name__name")[:1]))


def clear(apps, schema_editor) -> None:
    apps.get_model("registry", "Study").objects.exclude(standard_name=None).update(standard_name=None)


class Migration(migrations.Migration):
    dependencies = [("protocols", "0003_dx_and_paediatric_drl_sets"), ("registry", "0014_study_standard_name")]
    operations = [migrations.RunPython(backfill, clear)]
