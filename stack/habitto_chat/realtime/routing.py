"""Socket URLs (trailing slash optional) behind the JWT middleware."""

from channels.routing import URLRouter
from django.urls import re_path

from .auth import JWTAuthMiddleware
from .device import DeviceConsumer
from .consumers import (
    InboxConsumer,
    PropertyNotificationConsumer,
    RoomConsumer,
    TenantNotificationConsumer,
    UnknownPathConsumer,
)

websocket_urlpatterns = [
    re_path(r"^ws/chat/inbox/(?P<user_id>\d{1,18})/?$", InboxConsumer.as_asgi()),
    re_path(r"^ws/notifications/(?P<user_id>\d{1,18})/?$", InboxConsumer.as_asgi()),
    re_path(r"^ws/property-notifications/(?P<user_id>\d{1,18})/?$", PropertyNotificationConsumer.as_asgi()),
    re_path(r"^ws/tenant-notifications/(?P<user_id>\d{1,18})/?$", TenantNotificationConsumer.as_asgi()),
    re_path(r"^ws/chat/(?P<low>\d{1,18})-(?P<high>\d{1,18})/?$", RoomConsumer.as_asgi()),
    re_path(r"^ws/v2/?$", DeviceConsumer.as_asgi()),
    re_path(r"", UnknownPathConsumer.as_asgi()),
]

websocket_application = JWTAuthMiddleware(URLRouter(websocket_urlpatterns))
