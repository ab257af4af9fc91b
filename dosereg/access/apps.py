from django.apps import AppConfig


class AccessConfig(AppConfig):
    """Roles and RSO site scope: the low-level access rules every app may read (no app below it imports it)."""

    name = "dosereg.access"
    label = "access"
    default_auto_field = "django.db.models.BigAutoField"
