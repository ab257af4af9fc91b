"""Audit trail: who read or exported which patient-identifying data, when, from where.

Rows are append-only (no update/delete in the app; the admin is read-only).
``patient_pk`` is a plain integer, not a foreign key, so the trail survives
patient merges and deletions.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    ACTION_VIEW = "view"
    ACTION_EXPORT = "export"
    ACTION_API_READ = "api_read"
    ACTION_CHANGE = "change"
    ACTION_LOGIN = "login"
    ACTION_LOGIN_FAILED = "login_failed"
    ACTION_LOGOUT = "logout"
    ACTION_CHOICES = [
        (ACTION_VIEW, "view"),
        (ACTION_EXPORT, "export"),
        (ACTION_API_READ, "API read"),
        (ACTION_CHANGE, "change"),
        (ACTION_LOGIN, "login"),
        (ACTION_LOGIN_FAILED, "login failed"),
        (ACTION_LOGOUT, "logout"),
    ]

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True, default="")  # kept when the user is deleted
    roles = models.CharField(max_length=128, blank=True, default="")
    action = models.CharField(max_length=16, choices=ACTION_CHOICES)
    object_type = models.CharField(max_length=32, blank=True, default="")  # patient, study, export, alert, ...
    object_id = models.CharField(max_length=64, blank=True, default="")
    patient_pk = models.BigIntegerField(null=True, blank=True)  # registry Patient whose data was shown
    method = models.CharField(max_length=8, blank=True, default="")
    path = models.CharField(max_length=512, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["username", "at"]),
            models.Index(fields=["patient_pk", "at"]),
            models.Index(fields=["object_type", "object_id"]),
            models.Index(fields=["action", "at"]),
            models.Index(fields=["ip", "at"]),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.username or '-'} {self.action} {self.object_type}:{self.object_id}"
