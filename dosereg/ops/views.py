from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .health import health_report


@never_cache
@require_GET
def health(request):
    """Unauthenticated liveness/readiness: no patient data, only component states and counts."""
    healthy, report = health_report()
    return JsonResponse(report, status=200 if healthy else 503)
