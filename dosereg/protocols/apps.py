from django.apps import AppConfig


class ProtocolsConfig(AppConfig):
    name = "dosereg.protocols"
    label = "protocols"
    verbose_name = "Protocol audit summaries"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from dosereg.registry.models import Study

        from . import receivers

        post_delete.connect(receivers.on_study_deleted, sender=Study, dispatch_uid="protocols.study_deleted")
