"""Notification API routes, mounted by the host project (the standalone server:
/api/notifications/)."""

from rest_framework.routers import SimpleRouter

from .notifications import NotificationViewSet

router = SimpleRouter(trailing_slash=True)
router.register(r"", NotificationViewSet, basename="notification")
urlpatterns = router.urls
