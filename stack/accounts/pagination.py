"""Strict query parameters: page numbers, page sizes and ids that are not positive
integers are a 400, never a silent default or a 500."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

from habitto_chat.conf import chat_setting


def query_int(request, name, default=None, minimum=1, maximum=None):
    """The integer query parameter `name`, or `default` when absent or empty."""
    raw = request.query_params.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ValidationError({name: [f"Must be an integer {bounds}."]})
    return value


class StrictPageNumberPagination(PageNumberPagination):
    """`page` and `page_size` (1..MAX_PAGE_SIZE), validated before DRF paginates."""

    page_size_query_param = "page_size"

    def get_page_size(self, request):
        return query_int(
            request,
            self.page_size_query_param,
            default=chat_setting("PAGE_SIZE"),
            maximum=chat_setting("MAX_PAGE_SIZE"),
        )

    def paginate_queryset(self, queryset, request, view=None):
        query_int(request, self.page_query_param)  # DRF would answer "abc" with a 404
        return super().paginate_queryset(queryset, request, view)
