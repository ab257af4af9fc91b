from django.contrib import admin
from django.urls import include, path

from dosereg.web.views import LoginView

urlpatterns = [
    # the admin signs in through the throttled login page too
    path("admin/login/", LoginView.as_view(), name="admin_login"),
    path("admin/", admin.site.urls),
    path("", include("dosereg.web.urls")),
    path("alerts/", include("dosereg.web.cases_urls")),  # the RSO's worklist and cases (after web: its <id:> converter)
    path("", include("dosereg.ops.urls")),
]
