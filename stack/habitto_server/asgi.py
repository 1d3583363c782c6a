"""ASGI entry point: HTTP goes to Django, WebSockets to the chat app's socket router."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "habitto_server.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()  # sets Django up before the chat app imports models

from channels.routing import ProtocolTypeRouter  # noqa: E402

from habitto_chat.realtime.hub import lifespan  # noqa: E402
from habitto_chat.realtime.routing import websocket_application  # noqa: E402
from habitto_server.bodylimit import BodyLimitMiddleware  # noqa: E402

application = ProtocolTypeRouter(
    {"http": BodyLimitMiddleware(django_asgi_app), "websocket": websocket_application, "lifespan": lifespan}
)
