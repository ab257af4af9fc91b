from django.apps import AppConfig


class PipelineConfig(AppConfig):
    name = "dosereg.pipeline"
    label = "pipeline"
    verbose_name = "Ingest pipeline"

    def ready(self) -> None:
        # registers the ingest task under its name in every process (the registry queues it by name)
        from . import tasks  # noqa: F401
