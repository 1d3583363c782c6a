"""OpenAPI descriptions of what the accounts endpoints really answer: every body in the
envelope {"success", "message", "data"}, with bounds on ids and page sizes."""

from functools import cache

from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers

from habitto_chat.conf import chat_setting
from habitto_chat.parsing import MAX_ID

ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": MAX_ID}


def paging():
    return [
        OpenApiParameter("page", {"type": "integer", "minimum": 1, "maximum": 10**9}),
        OpenApiParameter(
            "page_size", {"type": "integer", "minimum": 1, "maximum": chat_setting("MAX_PAGE_SIZE")}
        ),
    ]


def id_parameter(name, location=OpenApiParameter.QUERY, required=False):
    return OpenApiParameter(name, ID_SCHEMA, location, required=required)


@extend_schema_field({"type": "object", "nullable": True, "description": "Always null here."})
class NullField(serializers.Field):
    """`data` of an answer that carries nothing (logout)."""


def _envelope_class(name, data_field, success):
    return type(
        name,
        (serializers.Serializer,),
        {
            "success": serializers.BooleanField(help_text=f"Always {str(success).lower()} here."),
            "message": serializers.CharField(help_text="A sentence for people."),
            "data": data_field,
        },
    )


@cache
def enveloped(payload=None, paged=False):
    """The envelope around `payload` (a serializer class; None: data is null), or around
    a page {"count", "next", "previous", "results"} of them."""
    if payload is None:
        return _envelope_class("EmptyEnvelope", NullField(), True)
    name = payload.__name__.removesuffix("Serializer")
    if not paged:
        return _envelope_class(f"{name}Envelope", payload(), True)
    page = type(
        f"{name}Page",
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(min_value=0),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": payload(many=True),
        },
    )
    return _envelope_class(f"{name}PageEnvelope", page(), True)


ErrorEnvelope = _envelope_class(
    "ErrorEnvelope",
    serializers.JSONField(
        allow_null=True,
        help_text='Field errors {"field": ["message", ...]}, or {"code": "..."}, or null.',
    ),
    False,
)


def answers(ok_status, payload=None, *errors, paged=False):
    """extend_schema(responses=...) for an endpoint: its success and its errors."""
    return {ok_status: enveloped(payload, paged), **{status: ErrorEnvelope for status in errors}}
