"""API tokens (DRF ``authtoken``) that expire and are revoked.

A token is valid for ``API_TOKEN_TTL_HOURS`` after it was issued (``Token.created``); an expired token is
deleted when it is presented. Every token of a user is deleted when their password changes (any path: the
admin, ``changepassword``, ``set_password`` + ``save``) and when they sign out of the web pages.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token


def token_ttl() -> timedelta:
    return timedelta(hours=settings.DOSEREG_API_TOKEN_TTL_HOURS)


def token_expired(token: Token, *, now=None) -> bool:
    return token.created <= (now or timezone.now()) - token_ttl()


def token_issue(user) -> tuple[Token, datetime]:
    """The user's valid token (a new one when there is none or it expired) and when it expires."""
    token = Token.objects.filter(user=user).first()
    if token is not None and token_expired(token):
        token.delete()
        token = None
    if token is None:
        token = Token.objects.create(user=user)
    return token, token.created + token_ttl()


def tokens_revoke(user) -> int:
    if user is None or user.pk is None:
        return 0
    return Token.objects.filter(user_id=user.pk).delete()[0]


class ExpiringTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        if token_expired(token):
            token.delete()
            raise exceptions.AuthenticationFailed("Token expired; request a new one.")
        return user, token


# --- revocation receivers (wired in apps.py) -------------------------------------------------------------
def on_user_pre_save(sender, instance, update_fields=None, **kwargs) -> None:
    """A changed password hash revokes the user's tokens (a save that does not write the password is skipped)."""
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    old = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password:
        tokens_revoke(instance)


def on_user_logged_out(sender, request, user, **kwargs) -> None:
    tokens_revoke(user)
