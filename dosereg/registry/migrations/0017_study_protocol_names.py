"""``Study.protocol_names`` (the distinct protocol names of a study's events, one per line) with a trigram index,
in place of the trigram index over every irradiation event's protocol (0009): the study browser's "protocol or
study name contains" search reads studies (issue 17), and the ingest writes one trigram entry set per study
instead of one per event (issues 13 and 18: the event index was the largest single addition to the WAL each
ingested object writes, 1.3 of 18.5 KiB). Back-filled here; ``registry.totals`` keeps it with the other totals."""
from django.db import migrations, models

from dosereg.registry.pg_indexes import trigram_indexes

STUDY_INDEX = (("registry_st_protocols_trgm", "registry_study", "protocol_names"),)
EVENT_INDEX = (("registry_ev_protocol_trgm", "registry_irradiationevent", "protocol"),)
create_study_index, drop_study_index = trigram_indexes(STUDY_INDEX, "the study browser's protocol search")
create_event_index, drop_event_index = trigram_indexes(EVENT_INDEX, "the study browser's protocol search")


def backfill(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "UPDATE registry_study s SET protocol_names = p.names FROM ("
            " SELECT study_id, string_agg(protocol, E'\\n' ORDER BY protocol COLLATE \"C\") AS names FROM ("
            "  SELECT DISTINCT study_id, protocol FROM registry_irradiationevent WHERE protocol <> '') d"
            " GROUP BY study_id) p WHERE p.study_id = s.id")
        return
    Study = apps.get_model("registry", "Study")
    IrradiationEvent = apps.get_model("registry", "IrradiationEvent")
    names: dict[int, set[str]] = {}
    for study_id, protocol in IrradiationEvent.objects.exclude(protocol="").values_list("study_id", "protocol").iterator():
        names.setdefault(study_id, set()).add(protocol)
    for study_id, found in names.items():
        Study.objects.filter(pk=study_id).update(protocol_names="\n".join(sorted(found)))


def drop_event_index_and_create_study_index(apps, schema_editor) -> None:
    drop_event_index(apps, schema_editor)
    create_study_index(apps, schema_editor)


def restore_event_index(apps, schema_editor) -> None:
    drop_study_index(apps, schema_editor)
    create_event_index(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [("registry", "0016_index_diet")]
    operations = [
        migrations.AddField(model_name="study", name="protocol_names", field=models.TextField(blank=True, default="")),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.RunPython(drop_event_index_and_create_study_index, restore_event_index),
    ]
