"""Content-Security-Policy for the app's own pages: scripts only from our static files."""
from __future__ import annotations

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
