from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "dosereg.audit"
    label = "audit"
