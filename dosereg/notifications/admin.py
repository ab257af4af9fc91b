from django.contrib import admin

from .models import Notification, NotificationAttempt


class AttemptInline(admin.TabularInline):
    model = NotificationAttempt
    extra = 0
    readonly_fields = ("recipient", "at", "outcome", "error")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ("dedupe_key", "recipient", "severity", "status", "attempt_count", "created_at", "sent_at")
    list_filter = ("status", "severity", "digest")
    search_fields = ("dedupe_key", "recipient", "subject")
    inlines = [AttemptInline]
