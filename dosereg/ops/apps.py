from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "dosereg.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (Celery task failure -> TaskFailure rows)
