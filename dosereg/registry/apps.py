from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "dosereg.registry"
    label = "registry"
    verbose_name = "Dose registry"
