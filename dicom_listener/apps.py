from django.apps import AppConfig


class DicomListenerConfig(AppConfig):
    name = "dicom_listener"
    verbose_name = "DICOM listener"
