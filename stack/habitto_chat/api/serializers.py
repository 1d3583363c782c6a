"""The shapes of the chat API's request bodies: field types and id ranges. What a send
must satisfy beyond its shape (content, client_id) is checked by habitto_chat.sends, in
the action, the same for REST and sockets. Output shapes are built by habitto_chat.wire."""

from rest_framework import serializers

from ..parsing import MAX_ID
from ..sends import MAX_CLIENT_ID


class StringField(serializers.CharField):
    """A CharField that refuses numbers: DRF's would store {"content": 123} as "123"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SendMessageInput(serializers.Serializer):
    receiver = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    content = StringField(trim_whitespace=False, allow_blank=True)
    client_id = StringField(required=False, allow_null=True, max_length=MAX_CLIENT_ID)
    # Accepted only when it names the caller: the sender is always the authenticated user.
    sender = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


class EditMessageInput(serializers.Serializer):
    content = StringField(trim_whitespace=False, allow_blank=True)


class OtherUserInput(serializers.Serializer):
    other_user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
