from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "dosereg.web"
    label = "web"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model, signals
        from django.db.backends.signals import connection_created
        from django.db.models.signals import pre_save

        from . import tokens
        from .selectors import SQLitePercentile

        # the protocol pages' percentiles on SQLite, the embedded default (PostgreSQL has percentile_cont)
        connection_created.connect(SQLitePercentile.register, dispatch_uid="web_sqlite_percentile")

        # API tokens die with a password change and a sign-out (dosereg.web.tokens)
        pre_save.connect(tokens.on_user_pre_save, sender=get_user_model(), dispatch_uid="web_token_revoke_password")
        signals.user_logged_out.connect(tokens.on_user_logged_out, dispatch_uid="web_token_revoke_logout")
