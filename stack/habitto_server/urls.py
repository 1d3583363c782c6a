"""URLs of the standalone server: the web client, accounts, the chat API, health, schema."""

from django.conf import settings
from django.urls import include, path
from django.views.static import serve as serve_media
from drf_spectacular.views import SpectacularAPIView

from habitto_chat.api import envelope
from habitto_chat.health import healthz, readyz
from habitto_server.metrics import metrics_view
from habitto_web import views as web

urlpatterns = [
    path("", web.index, name="web-index"),
    path("web/<str:name>", web.asset, name="web-asset"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),  # loopback or METRICS_TOKEN only
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("habitto_accounts.urls")),
    path("api/messages/", include("habitto_chat.api.urls")),
    path("api/notifications/", include("habitto_chat.api.notification_urls")),
    # Uploaded profile pictures. Behind a proxy, serve /media/ from the proxy instead.
    path("media/<path:path>", serve_media, {"document_root": settings.MEDIA_ROOT}),
]

handler400 = envelope.handler400
handler403 = envelope.handler403
handler404 = envelope.handler404
handler500 = envelope.handler500
