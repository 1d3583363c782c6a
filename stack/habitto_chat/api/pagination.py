"""Paging parameters and the paged payload shape `{"count","next","previous","results"}`.

Parameters are parsed strictly: a non-numeric or out-of-range page, page size or
cursor is a 400, never a silent default and never a 500.
"""

from urllib.parse import urlencode

from ..conf import chat_setting
from ..conversations import parse_id
from ..errors import InvalidInput
from ..parsing import parse_int


def _positive(query, name, default, maximum):
    raw = query.get(name)
    if raw in (None, ""):
        return default
    try:
        return parse_int(raw, 1, maximum)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer from 1 to {maximum}.", code="invalid_" + name) from None


def page_params(query):
    """(page, page_size) from the query string."""
    page_size = _positive(query, "page_size", chat_setting("PAGE_SIZE"), chat_setting("MAX_PAGE_SIZE"))
    page = _positive(query, "page", 1, 10**9)
    return page, page_size


def cursor_param(query, name):
    raw = query.get(name)
    return None if raw in (None, "") else parse_id(raw, name)


def _url(request, **params):
    query = request.query_params.copy()
    for key in ("page", "before_id", "after_id"):
        query.pop(key, None)
    for key, value in params.items():
        query[key] = str(value)
    return request.build_absolute_uri(request.path) + "?" + urlencode(sorted(query.items()))


def numbered_payload(request, page, page_no, cursor_name=None):
    """A page by number. With `cursor_name`, `next` continues from the last item by that
    cursor instead, so following it while new rows arrive neither repeats nor skips."""
    if not page.has_more or not page.items:
        next_url = None
    elif cursor_name:
        next_url = _url(request, **{cursor_name: page.items[-1]["id"]})
    else:
        next_url = _url(request, page=page_no + 1)
    return {
        "count": page.count,
        "next": next_url,
        "previous": _url(request, page=page_no - 1) if page_no > 1 else None,
        "results": page.items,
    }


def cursor_payload(request, page, cursor_name):
    """Next link continues in the same direction from the last item."""
    last = page.items[-1]["id"] if page.items else None
    return {
        "count": page.count,
        "next": _url(request, **{cursor_name: last}) if page.has_more and last else None,
        "previous": None,
        "results": page.items,
    }
