"""Notifications: one row per (dedupe_key, recipient); every delivery attempt recorded.

The unique constraint is what makes delivery "exactly once per key and recipient":
whatever re-evaluates, re-ingests or re-views, a second enqueue finds the row and
does nothing.
"""
from __future__ import annotations

from django.db import models

SEVERITY_LOW = "low"
SEVERITY_NORMAL = "normal"
SEVERITY_HIGH = "high"
SEVERITIES = (SEVERITY_LOW, SEVERITY_NORMAL, SEVERITY_HIGH)
SEVERITY_RANK = {SEVERITY_LOW: 0, SEVERITY_NORMAL: 1, SEVERITY_HIGH: 2}


class Notification(models.Model):
    STATUS_PENDING = "pending"          # waiting for (another) delivery attempt
    STATUS_SENT = "sent"
    STATUS_FAILED = "failed"            # permanent error, or transient errors until retries ran out
    STATUS_DIGEST = "digest_pending"    # waits for the daily digest
    STATUS_DIGESTED = "digested"        # delivered inside a digest e-mail (see digest)
    STATUS_CHOICES = [(s, s) for s in (STATUS_PENDING, STATUS_SENT, STATUS_FAILED, STATUS_DIGEST, STATUS_DIGESTED)]

    dedupe_key = models.CharField(max_length=255)
    recipient = models.CharField(max_length=254)  # e-mail address
    subject = models.CharField(max_length=255)
    body = models.TextField()
    severity = models.CharField(max_length=8, choices=[(s, s) for s in SEVERITIES], default=SEVERITY_NORMAL)
    digest = models.BooleanField(default=False)
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=STATUS_PENDING, db_index=True)
    attempt_count = models.IntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    # A delivery in progress (claimed by a task, or waiting for its retry): that task runs or finishes before
    # this time. A pending row past it was lost with its worker and is re-queued (notifications_requeue_expired).
    lease_until = models.DateTimeField(null=True, blank=True)
    # the digest e-mail (itself a Notification) that carried this one
    digested_in = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="digest_items")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["dedupe_key", "recipient"], name="uniq_notification_key_recipient")]
        indexes = [models.Index(fields=["digest", "status"]), models.Index(fields=["status", "lease_until"])]

    def __str__(self) -> str:
        return f"{self.dedupe_key} → {self.recipient} ({self.status})"


class NotificationAttempt(models.Model):
    OUTCOME_SENT = "sent"
    OUTCOME_TRANSIENT = "transient_error"  # retried (or gave up when retries ran out)
    OUTCOME_PERMANENT = "permanent_error"  # never retried
    OUTCOME_INTERRUPTED = "interrupted"    # the delivery never finished (worker lost); re-queued
    OUTCOME_CHOICES = [(s, s) for s in (OUTCOME_SENT, OUTCOME_TRANSIENT, OUTCOME_PERMANENT, OUTCOME_INTERRUPTED)]

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempts")
    recipient = models.CharField(max_length=254)
    at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=16, choices=OUTCOME_CHOICES)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["at", "id"]
