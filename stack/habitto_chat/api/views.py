"""The chat REST API (docs/protocol.md). Views parse, call an action or a query, render;
everything is scoped to the authenticated caller."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied

from .. import actions, queries, wire
from ..conversations import check_counterpart, parse_id
from .base import ChatViewSet
from .envelope import ok
from .pagination import cursor_param, cursor_payload, numbered_payload, page_params
from .serializers import EditMessageInput, OtherUserInput, SendMessageInput
from .throttling import SendThrottle

PAGING = [
    OpenApiParameter("page", int),
    OpenApiParameter("page_size", int),
]
CURSORS = [OpenApiParameter("before_id", int), OpenApiParameter("after_id", int)]
MESSAGE_ID = [OpenApiParameter("id", int, OpenApiParameter.PATH)]


def _valid(serializer_class, data):
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@extend_schema(responses=OpenApiTypes.OBJECT)  # the envelope; shapes: docs/protocol.md
class MessageViewSet(ChatViewSet):
    def get_throttles(self):
        # Sends spend the user's socket send budget; other calls are not throttled.
        return [SendThrottle()] if self.action == "create" else []

    def _thread(self, request, other_id):
        query = request.query_params
        before_id, after_id = cursor_param(query, "before_id"), cursor_param(query, "after_id")
        page_no, page_size = page_params(query)
        check_counterpart(request.user.pk, other_id, must_be_active=False)
        page = queries.thread_page(
            request.user.pk, other_id, before_id=before_id, after_id=after_id,
            offset=(page_no - 1) * page_size, limit=page_size,
        )
        if after_id is not None:
            return ok(cursor_payload(request, page, "after_id"))
        if before_id is not None:
            return ok(cursor_payload(request, page, "before_id"))
        return ok(numbered_payload(request, page, page_no, cursor_name="before_id"))

    @extend_schema(
        operation_id="messages_list",
        parameters=[OpenApiParameter("other_user_id", int), *PAGING, OpenApiParameter("before_id", int)],
    )
    def list(self, request):
        """The caller's messages (or one thread with `other_user_id`), newest first."""
        other = request.query_params.get("other_user_id")
        if other not in (None, ""):
            return self._thread(request, parse_id(other, "other_user_id"))
        before_id = cursor_param(request.query_params, "before_id")
        page_no, page_size = page_params(request.query_params)
        page = queries.user_messages_page(
            request.user.pk, before_id=before_id, offset=(page_no - 1) * page_size, limit=page_size
        )
        if before_id is not None:
            return ok(cursor_payload(request, page, "before_id"))
        return ok(numbered_payload(request, page, page_no))

    @extend_schema(request=SendMessageInput)
    def create(self, request):
        data = _valid(SendMessageInput, request.data)
        if data.get("sender", request.user.pk) != request.user.pk:
            raise PermissionDenied("sender must be the authenticated user.")
        result = actions.do_send_message(
            request.user.pk, data["receiver"], data["content"], data.get("client_id")
        )
        if result.created:  # just committed: nobody has read it yet
            return ok(wire.message_dict(result.message, False), "Message sent", status.HTTP_201_CREATED)
        payload = queries.visible_message(request.user.pk, result.message.id)
        return ok(payload, "Message already stored (same client_id)")

    @extend_schema(parameters=MESSAGE_ID)
    def retrieve(self, request, pk=None):
        return ok(queries.visible_message(request.user.pk, parse_id(pk, "id")))

    @extend_schema(request=EditMessageInput, parameters=MESSAGE_ID)
    def partial_update(self, request, pk=None):
        message_id = parse_id(pk, "id")
        data = _valid(EditMessageInput, request.data)
        return ok(actions.do_edit_message(request.user.pk, message_id, data["content"]), "Message edited")

    update = partial_update

    @extend_schema(parameters=MESSAGE_ID, responses={200: OpenApiTypes.OBJECT})  # 200 with a body, not 204
    def destroy(self, request, pk=None):
        message_id = parse_id(pk, "id")
        actions.do_delete_message(request.user.pk, message_id)
        return ok({"id": message_id, "deleted": True}, "Message deleted")

    @extend_schema(request=None, parameters=MESSAGE_ID)
    @action(detail=True, methods=["post"])
    def mark_read(self, request, pk=None):
        message_id = parse_id(pk, "id")
        actions.do_mark_read(request.user.pk, message_id)
        return ok(queries.visible_message(request.user.pk, message_id), "Marked as read")

    @extend_schema(parameters=PAGING)
    @action(detail=False, methods=["get"])
    def conversations(self, request):
        page_no, page_size = page_params(request.query_params)
        page = queries.conversation_page(
            request.user.pk, (page_no - 1) * page_size, page_size, request.build_absolute_uri("/")
        )
        return ok(numbered_payload(request, page, page_no))

    @extend_schema(parameters=[OpenApiParameter("other_user_id", int, required=True), *PAGING, *CURSORS])
    @action(detail=False, methods=["get"])
    def thread(self, request):
        return self._thread(request, parse_id(request.query_params.get("other_user_id"), "other_user_id"))

    @extend_schema(request=OtherUserInput)
    @action(detail=False, methods=["post"])
    def mark_thread_read(self, request):
        other_id = _valid(OtherUserInput, request.data)["other_user_id"]
        actions.do_mark_thread_read(request.user.pk, other_id)
        return ok({"other_user_id": other_id, "unread_total": queries.unread_total(request.user.pk)}, "Thread marked as read")

    @extend_schema(request=OtherUserInput)
    @action(detail=False, methods=["post"])
    def clear_conversation(self, request):
        other_id = _valid(OtherUserInput, request.data)["other_user_id"]
        cleared = actions.do_clear_conversation(request.user.pk, other_id)
        return ok({"other_user_id": other_id, "cleared_before_id": cleared}, "Conversation cleared")

    @action(detail=False, methods=["get"])
    def unread(self, request):
        return ok({"unread_total": queries.unread_total(request.user.pk)})
