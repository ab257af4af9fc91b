from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "dosereg.notifications"
    label = "notifications"
