from django.apps import AppConfig


class ExposureConfig(AppConfig):
    name = "dosereg.exposure"
    label = "exposure"
