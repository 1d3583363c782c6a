"""Input validation for the chat API. Output shapes are built by habitto_chat.wire."""

from rest_framework import serializers

from ..conversations import MAX_ID


class SendMessageInput(serializers.Serializer):
    receiver = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    content = serializers.CharField(trim_whitespace=False, allow_blank=True)
    client_id = serializers.CharField(required=False, allow_null=True, max_length=64)
    # Accepted only when it names the caller: the sender is always the authenticated user.
    sender = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID)


class EditMessageInput(serializers.Serializer):
    content = serializers.CharField(trim_whitespace=False, allow_blank=True)


class OtherUserInput(serializers.Serializer):
    other_user_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
