from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "dosereg.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from django.contrib.auth import signals

        from . import receivers

        signals.user_logged_in.connect(receivers.on_login, dispatch_uid="audit_login")
        signals.user_logged_out.connect(receivers.on_logout, dispatch_uid="audit_logout")
        signals.user_login_failed.connect(receivers.on_login_failed, dispatch_uid="audit_login_failed")
