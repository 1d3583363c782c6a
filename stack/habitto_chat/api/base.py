"""What every chat API view set shares: bearer tokens, authenticated callers only, the
envelope (success and errors), bounded JSON bodies. Set on the views, not only in
settings, so the app behaves the same inside another project."""

from rest_framework import viewsets
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated

from .authentication import JWTAuthentication
from .envelope import EnvelopeJSONRenderer, envelope_exception_handler
from .parsers import BoundedJSONParser


class ChatViewSet(viewsets.ViewSet):
    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]
    renderer_classes = [EnvelopeJSONRenderer]
    parser_classes = [BoundedJSONParser, FormParser, MultiPartParser]

    def get_exception_handler(self):
        return envelope_exception_handler
