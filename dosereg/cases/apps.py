from django.apps import AppConfig


class CasesConfig(AppConfig):
    name = "dosereg.cases"
    label = "cases"
    verbose_name = "RSO cases (worklist)"
