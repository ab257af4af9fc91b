"""Content-Security-Policy for the app's own pages: scripts only from our static files. No caching of
anything a signed-in user (page or API) is shown."""
from __future__ import annotations

from django.utils.cache import add_never_cache_headers

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        # the Django admin and DRF's browsable API use inline scripts/styles: leave them alone
        if not request.path.startswith(("/admin/", "/api/")):
            response.headers.setdefault("Content-Security-Policy", CSP)
        return response


class NoStoreMiddleware:
    """``Cache-Control: no-store`` (and private, no-cache) on every response to a signed-in user (session or
    API token) and on every API response: patient pages, exports and FHIR never rest in a browser, proxy or
    shared-computer cache. Static files (WhiteNoise, earlier in the chain) keep their long cache headers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if ((user is not None and user.is_authenticated) or request.path.startswith("/api/")) \
                and "no-store" not in response.get("Cache-Control", ""):
            add_never_cache_headers(response)
        return response
