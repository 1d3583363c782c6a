"""Chat API routes, mounted by the host project (the standalone server: /api/messages/)."""

from rest_framework.routers import SimpleRouter

from .views import MessageViewSet

router = SimpleRouter(trailing_slash=True)
router.register(r"", MessageViewSet, basename="message")
urlpatterns = router.urls
