from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "dosereg.staff"
    label = "staff"
    verbose_name = "Staff exposure"
    default_auto_field = "django.db.models.BigAutoField"
