"""Serving the console (no browser): where it is mounted, the security headers on every UI
response, turning it off, and the API routes it must leave alone."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from labs_gateway import create_app
from labs_gateway.routes.ui import CSP, STATIC
from tests.labs_gateway.support import gateway_settings

ROOT = Path(__file__).resolve().parents[3]


def client(**gateway) -> TestClient:
    """The app without its lifespan: static routes need no core."""
    return TestClient(create_app(gateway_settings(["127.0.0.1:9"], **gateway)), raise_server_exceptions=True)


def test_console_served_at_root_with_strict_headers(fake_gateway):
    page = httpx.get(f"{fake_gateway.url}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="js/app.js">' in page.text
    csp = page.headers["content-security-policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "img-src 'self' data:", "frame-ancestors 'none'", "object-src 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    script = httpx.get(f"{fake_gateway.url}/js/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["content-security-policy"] == CSP
    again = httpx.get(f"{fake_gateway.url}/js/app.js", headers={"if-none-match": script.headers["etag"]})
    assert again.status_code == 304 and again.headers["content-security-policy"] == CSP


def test_page_has_no_inline_script_style_or_third_party_urls():
    """What the CSP would block anyway, checked at the source so a regression shows here first."""
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline <script>"
    assert " style=" not in html and "<style" not in html
    for path in STATIC.rglob("*"):
        if path.suffix in (".html", ".js", ".css") and "vendor" not in path.parts:
            text = path.read_text()
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path
            assert "innerHTML =" not in text or path.name == "markdown.js", f"{path}: build DOM with textContent"
            assert "setAttribute(\"style\"" not in text and "eval(" not in text, path


def test_vendored_libraries_carry_their_licences():
    vendor = STATIC / "vendor"
    for library, licence in (("marked.esm.js", "marked.LICENSE.md"), ("purify.min.js", "dompurify.LICENSE"),
                             ("prism.min.js", "prism.LICENSE")):
        assert (vendor / library).stat().st_size < 80_000, library
        assert (vendor / licence).read_text().strip(), licence


def test_unknown_paths_and_methods_stay_json_404(fake_gateway):
    for method, path in (("GET", "/v1/nothing"), ("POST", "/v1/nothing"), ("POST", "/"), ("GET", "/js/missing.js")):
        response = httpx.request(method, f"{fake_gateway.url}{path}")
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["type"] == "not_found_error"


def test_api_routes_unchanged_with_console_at_root(fake_gateway):
    assert httpx.get(f"{fake_gateway.url}/health").json() == {"status": "ok"}
    wrong_method = httpx.get(f"{fake_gateway.url}/v1/chat/completions")  # not hidden behind the console's 404
    assert wrong_method.status_code == 405 and wrong_method.json()["error"]["code"] == "method_not_allowed"
    assert httpx.get(f"{fake_gateway.url}/v1/models").json()["object"] == "list"
    docs = httpx.get(f"{fake_gateway.url}/docs")
    assert docs.status_code == 200 and "content-security-policy" not in docs.headers  # its own inline page
    schema = httpx.get(f"{fake_gateway.url}/openapi.json").json()
    assert "/" not in schema["paths"] and "/v1/chat/completions" in schema["paths"]
    httpx.get(f"{fake_gateway.url}/css/console.css")
    metrics = httpx.get(f"{fake_gateway.url}/metrics").text
    assert 'labs_gateway_requests_total{method="GET",route="ui",status="200"}' in metrics


def test_console_can_be_turned_off():
    http = client(ui=False)
    response = http.get("/")
    assert response.status_code == 404 and "content-security-policy" not in response.headers
    assert http.get("/js/app.js").status_code == 404


@pytest.mark.parametrize("ui_path", ["/console", "console/", "/console/"])
def test_console_at_a_sub_path(ui_path):
    http = client(ui_path=ui_path)
    page = http.get("/console/")
    assert page.status_code == 200 and "labs console" in page.text
    assert page.headers["content-security-policy"] == CSP
    assert http.get("/console/css/console.css").headers["content-type"].startswith("text/css")
    moved = http.get("/console", follow_redirects=False)
    assert moved.status_code in (301, 307) and moved.headers["location"].endswith("/console/")
    assert http.get("/").status_code == 404
    assert http.get("/js/app.js").status_code == 404


def test_package_data_rule_covers_every_console_file():
    """pyproject's `labs_gateway = ["static/**/*"]` must take every file, so `pip install` serves the UI."""
    import tomllib

    rules = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["labs_gateway"]
    package = STATIC.parent
    covered = {p for rule in rules for p in package.glob(rule) if p.is_file()}
    files = {p for p in STATIC.rglob("*") if p.is_file()}
    assert files and files <= covered, sorted(str(p.relative_to(package)) for p in files - covered)
