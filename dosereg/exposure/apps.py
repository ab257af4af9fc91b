from django.apps import AppConfig


class ExposureConfig(AppConfig):
    name = "dosereg.exposure"
    label = "exposure"
    verbose_name = "Cumulative patient exposure and alerts"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from dosereg.registry.models import Study

        from . import receivers

        post_delete.connect(receivers.on_study_deleted, sender=Study, dispatch_uid="exposure.study_deleted")
