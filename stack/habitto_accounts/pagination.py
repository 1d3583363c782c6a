"""Paging for the accounts lists through the chat API's one mechanism: the same strict
parameters (a page or page size that is not an integer in range is a 400 with the same
message and code) and the same `{"count", "next", "previous", "results"}` payload with
the same links. A page past the last one is a 404, as the lists always answered."""

from rest_framework.exceptions import NotFound
from rest_framework.pagination import BasePagination
from rest_framework.response import Response

from habitto_chat.api.pagination import numbered_payload, page_params
from habitto_chat.queries import Page


class StrictPageNumberPagination(BasePagination):
    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.page_no, page_size = page_params(request.query_params)
        self.count = queryset.count()
        offset = (self.page_no - 1) * page_size
        if offset and offset >= self.count:
            raise NotFound("Invalid page.")
        self.has_more = offset + page_size < self.count
        return list(queryset[offset : offset + page_size])

    def get_paginated_response(self, data):
        page = Page(items=list(data), count=self.count, has_more=self.has_more)
        return Response(numbered_payload(self.request, page, self.page_no))

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {"type": "integer"},
                "next": {"type": "string", "nullable": True, "format": "uri"},
                "previous": {"type": "string", "nullable": True, "format": "uri"},
                "results": schema,
            },
        }
