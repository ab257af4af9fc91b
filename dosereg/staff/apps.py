from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "dosereg.staff"
    label = "staff"
