"""Device identifiers rewritten with the normalisation of ``dosereg.registry.device_identity`` (manufacturer
aliases, serials without case or separators), and one as-received identity per existing device (its own first
values) given to its studies. Where two devices now share an identifier value (the same unit seen under two
spellings), the older device keeps it; merge the two in the web (Devices) to combine them."""
from django.db import migrations


def forwards(apps, schema_editor):
    from dosereg.registry.device_identity import identifier_value_renormalised, received

    DeviceIdentifier = apps.get_model("registry", "DeviceIdentifier")
    Device = apps.get_model("registry", "Device")
    DeviceIdentity = apps.get_model("registry", "DeviceIdentity")
    Study = apps.get_model("registry", "Study")
    taken: set[tuple[str, str]] = set()
    for ident in DeviceIdentifier.objects.order_by("device_id", "pk").iterator():
        value = identifier_value_renormalised(ident.kind, ident.value)
        if (ident.kind, value) in taken:
            ident.delete()
            continue
        taken.add((ident.kind, value))
        if value != ident.value:
            ident.value = value
            ident.save(update_fields=["value"])
    for d in Device.objects.order_by("pk").iterator():
        r = received(d.manufacturer, d.model, d.serial_number, d.station_name, d.device_observer_uid)
        identity = DeviceIdentity.objects.filter(key=r.key).first() or DeviceIdentity.objects.create(
            device_id=d.pk, key=r.key, manufacturer=r.manufacturer, model=r.model, serial_number=r.serial_number,
            station_name=r.station_name, device_observer_uid=r.device_observer_uid)
        Study.objects.filter(device_id=d.pk, received_identity__isnull=True).update(received_identity_id=identity.pk)


class Migration(migrations.Migration):
    dependencies = [("registry", "0009_device_identity")]
    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
