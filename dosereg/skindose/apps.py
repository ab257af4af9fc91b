from django.apps import AppConfig


class SkinDoseConfig(AppConfig):
    name = "dosereg.skindose"
    label = "skindose"
    verbose_name = "Skin dose"
    default_auto_field = "django.db.models.BigAutoField"
