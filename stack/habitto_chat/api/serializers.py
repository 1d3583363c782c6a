"""Input validation for the chat API. Output shapes are built by habitto_chat.wire."""

from rest_framework import serializers

from ..conversations import MAX_ID


class StringField(serializers.CharField):
    """A CharField that refuses numbers: DRF's would store {"content": 123} as "123"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SendMessageInput(serializers.Serializer):
    receiver = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    content = StringField(trim_whitespace=False, allow_blank=True)
    client_id = StringField(required=False, allow_null=True, max_length=64)
    # Accepted only when it names the caller: the sender is always the authenticated user.
    sender = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


class EditMessageInput(serializers.Serializer):
    content = StringField(trim_whitespace=False, allow_blank=True)


class OtherUserInput(serializers.Serializer):
    other_user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
