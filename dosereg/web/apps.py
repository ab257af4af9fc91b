from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "dosereg.web"
    label = "web"
