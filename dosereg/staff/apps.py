from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "dosereg.staff"
    label = "staff"
    verbose_name = "Staff exposure"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from dosereg.registry.signals import studies_changed

        from .services import on_studies_changed

        studies_changed.connect(on_studies_changed, dispatch_uid="staff.on_studies_changed")
