"""The notifications API as the shipped app calls it (docs/notifications.md), scoped to
the caller: the list (its page and badge), the summary (`my/`) and mark_as_read."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action

from .. import actions, queries
from ..conversations import parse_id
from ..errors import InvalidInput
from ..parsing import parse_bool
from .base import ChatViewSet
from .envelope import ok
from .pagination import numbered_payload, page_params

LISTING = [OpenApiParameter("page", int), OpenApiParameter("page_size", int), OpenApiParameter("is_read", bool)]


def _is_read_param(query):
    raw = query.get("is_read")
    if raw in (None, ""):
        return None
    try:
        return parse_bool(raw)
    except ValueError:
        raise InvalidInput("is_read must be true or false.", code="invalid_is_read") from None


@extend_schema(responses=OpenApiTypes.OBJECT)  # the envelope; shapes: docs/notifications.md
class NotificationViewSet(ChatViewSet):
    def _page(self, request):
        is_read = _is_read_param(request.query_params)
        page_no, page_size = page_params(request.query_params)
        page = queries.notification_page(
            request.user.pk, is_read=is_read, offset=(page_no - 1) * page_size, limit=page_size
        )
        return numbered_payload(request, page, page_no)

    @extend_schema(operation_id="notifications_list", parameters=LISTING)
    def list(self, request):
        """The caller's notifications, newest first; `count` also at the envelope's top
        level, where the app's badge (`?is_read=false`) reads it."""
        payload = self._page(request)
        return ok(payload, top_level={"count": payload["count"]})

    @extend_schema(parameters=LISTING)
    @action(detail=False, methods=["get"])
    def my(self, request):
        """The same page plus the caller's unread total and unread counts by kind."""
        payload = self._page(request)
        by_kind = queries.unread_notifications_by_kind(request.user.pk)
        payload.update(unread_count=sum(by_kind.values()), unread_by_kind=by_kind)
        return ok(payload, top_level={"count": payload["count"]})

    @extend_schema(request=None, parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH)])
    @action(detail=True, methods=["post"])
    def mark_as_read(self, request, pk=None):
        notification = actions.do_mark_notification_read(request.user.pk, parse_id(pk, "id"))
        return ok(notification, "Notification marked as read")
