"""Paging for the accounts lists, with the chat API's strict parameters: a page or
page size that is not an integer in range is a 400 (same message and code as the chat
endpoints), never a silent default or a 500."""

from rest_framework.pagination import PageNumberPagination

from habitto_chat.api.pagination import page_params


class StrictPageNumberPagination(PageNumberPagination):
    page_size_query_param = "page_size"

    def get_page_size(self, request):
        return page_params(request.query_params)[1]

    def paginate_queryset(self, queryset, request, view=None):
        page_params(request.query_params)  # DRF itself would answer page=abc with a 404
        return super().paginate_queryset(queryset, request, view)
