"""The web client's files as the server serves them at / and /web/<name> (habitto_web):
types, the Content-Security-Policy, revalidation, and nothing but the three files."""

import re

import pytest

from habitto_web.views import ASSET_DIR

pytestmark = pytest.mark.django_db(databases=[])


@pytest.mark.parametrize(("path", "content_type"), [
    ("/", "text/html; charset=utf-8"),
    ("/web/app.js", "text/javascript; charset=utf-8"),
    ("/web/app.css", "text/css; charset=utf-8"),
])
def test_assets_are_served_with_their_type_a_strict_policy_and_an_etag(client, path, content_type):
    response = client.get(path)
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self' ws: wss:" in policy and "img-src 'self' data: http: https:" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Content-Type-Options"] == "nosniff"

    again = client.get(path, headers={"If-None-Match": response["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200


def test_only_the_client_files_are_served(client):
    for path in ["/web/index.html", "/web/views.py", "/web/..%2Fviews.py", "/web/missing.js"]:
        assert client.get(path).status_code == 404, path
    assert client.post("/").status_code == 405
    assert client.head("/web/app.js").status_code == 200


def test_the_page_has_no_inline_script_or_style_and_no_remote_code():
    page = (ASSET_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.S)
    assert scripts and all(body.strip() == "" for body in scripts)
    assert all(re.search(r'src="/web/', tag) for tag in re.findall(r"<script\b[^>]*>", page))
    assert "<style" not in page and " style=" not in page and " on" + "click=" not in page
    assert "http://" not in page and "https://" not in page


def test_the_script_never_parses_markup():
    """User text reaches the page as text nodes only (the browser test checks the result)."""
    script = (ASSET_DIR / "app.js").read_text()
    for sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"]:
        assert sink not in script, sink


def test_served_the_same_with_debug_off(client, settings):
    """`make up` runs with DEBUG off and no collectstatic: the files come from the package."""
    settings.DEBUG = False
    response = client.get("/web/app.js")
    assert response.status_code == 200 and response.content == (ASSET_DIR / "app.js").read_bytes()
