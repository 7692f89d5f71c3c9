"""The API docs page (/api/v1/docs) in a real browser: Swagger UI renders from our own static files under the
strict CSP, with no CSP violation, no script error and no request leaving the site."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.django_db(transaction=True)
def test_swagger_ui_renders_under_the_csp_from_local_assets(browser: Any, live_server: Any) -> None:
    page = browser.new_page()
    problems: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(f"{live_server.url}/api/v1/docs")
    page.wait_for_selector(".opblock-summary-path")
    assert "/api/v1/studies" in page.inner_text(".opblock-summary-path")
    assert page.is_visible(".auth-wrapper .authorize")  # the bearer scheme is offered
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
    assert problems == []
    assert requests
    assert all(url.startswith((live_server.url, "data:")) for url in requests), requests
