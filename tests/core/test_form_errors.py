"""Every form shows its errors the same way (docs/architecture.md "Forms and their errors"): a summary at the top
that takes the focus and links to each field, and fields that name their hint and error (aria-describedby) and say
they are invalid (aria-invalid). One include renders every field, so the rule is checked here on a recipient form and
portal forms, and no template renders field errors by itself."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import translation

from tests.recipients.conftest import ready_share
from tests.shares.helpers import ANNA, make_study

SRC = Path(__file__).resolve().parents[2] / "src" / "radshare"
Element = tuple[str, dict[str, str]]


class _Elements(HTMLParser):
    """Each element's tag and attributes, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def elements(html: str) -> list[Element]:
    parser = _Elements()
    parser.feed(html)
    return parser.found


def by_id(html: str) -> dict[str, Element]:
    return {attrs["id"]: (tag, attrs) for tag, attrs in elements(html) if "id" in attrs}


def summary_links(html: str) -> list[str]:
    block = re.search(r'<div class="error-summary".*?</div>', html, re.DOTALL)
    assert block is not None, "no error summary"
    return re.findall(r'<a href="#([^"]+)"', block.group(0))


def assert_summary_first_and_focused(html: str) -> None:
    """The summary comes before every field and takes the focus (autofocus on a tabindex=-1 element: no script)."""
    found = elements(html)
    index = next(i for i, (_, attrs) in enumerate(found) if attrs.get("id") == "error-summary")
    _, summary = found[index]
    assert summary["role"] == "alert"
    assert summary["tabindex"] == "-1"
    assert "autofocus" in summary
    assert by_id(html)[summary["aria-labelledby"]][0] == "h2"
    fields = [
        i
        for i, (tag, attrs) in enumerate(found)
        if tag in ("input", "select", "textarea")
        and attrs.get("type") != "hidden"
        and not attrs.get("form")  # (a control of another form, e.g. the language buttons)
    ]
    main = next(i for i, (tag, _) in enumerate(found) if tag == "main")
    assert index < min(i for i in fields if i > main)
    autofocus = [attrs.get("id") for _, attrs in found if "autofocus" in attrs]
    assert autofocus[0] == "error-summary"  # the browser focuses the first one


def assert_described(html: str, field_id: str, *, hint: bool) -> None:
    """The field is marked invalid and names its error (and hint) by ids that are on the page."""
    ids = by_id(html)
    _, field = ids[field_id]
    assert field.get("aria-invalid") == "true", field
    described = field["aria-describedby"].split()
    assert described == [f"{field_id}_helptext"] * hint + [f"{field_id}_error"]
    for target in described:
        assert target in ids, f"aria-describedby names {target}, which is not on the page"


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


@pytest.mark.django_db
def test_the_birth_date_step_summarises_its_errors_and_marks_its_fields(
    organisation: Any, sms_file: Path
) -> None:
    _share, code = ready_share(
        organisation, [make_study(organisation, ANNA)], delivery="url", email="", language="en"
    )
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.get("/", {"code": code})
    first = client.get("/r/birth-date").content.decode()
    assert "error-summary" not in first
    assert "aria-invalid" not in first
    assert (
        by_id(first)["id_birth_date"][1]["aria-describedby"] == "id_birth_date_helptext"
    )  # the hint, always

    response = client.post("/r/birth-date", {"birth_date": "14-03-68"})
    assert response.status_code == 422
    html = response.content.decode()
    assert_summary_first_and_focused(html)
    assert "There is a problem" in html
    assert summary_links(html) == ["id_accept_terms", "id_birth_date"]
    assert_described(html, "id_accept_terms", hint=False)
    assert_described(html, "id_birth_date", hint=True)
    assert re.search(r"<title>Error: ", html)


@pytest.mark.django_db
def test_the_share_dialog_summarises_its_errors_and_marks_radios_and_fields(
    sender: Any, organisation: Any
) -> None:
    study = make_study(organisation, ANNA)
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(sender)
    response = client.post(
        "/portal/shares/new",
        {"study": [study.pk], "recipient_type": "patient", "delivery": "url"},
    )
    html = response.content.decode()
    assert_summary_first_and_focused(html)
    links = summary_links(html)
    assert "id_language_0" in links  # a group of radios: the link goes to its first choice
    assert "id_phone" in links
    ids = by_id(html)
    for link in links:
        assert link in ids, f"the summary links to #{link}, which is not on the page"
    assert_described(html, "id_phone", hint="id_phone_helptext" in ids)
    # A group of radios names its hint and error on its fieldset; each radio says it is invalid.
    fieldsets = [a.get("aria-describedby", "") for tag, a in elements(html) if tag == "fieldset"]
    assert any("id_language_error" in d.split() for d in fieldsets)
    assert "id_language_error" in ids
    assert ids["id_language_0"][1]["aria-invalid"] == "true"


@pytest.mark.django_db
def test_an_error_of_the_whole_form_is_in_the_summary(sender: Any) -> None:
    response = Client(HTTP_ACCEPT_LANGUAGE="en").post(
        "/portal/login/", {"username": "alice", "password": "wrong"}
    )
    html = response.content.decode()
    assert_summary_first_and_focused(html)
    assert "correct username and password" in html


def test_no_template_renders_field_errors_by_itself() -> None:
    """One include renders fields and their errors (core/_field.html), one the summary (core/_error_summary.html);
    the base template only puts "Error:" before the title."""
    own = {SRC / f"core/templates/core/{name}.html" for name in ("_field", "_error_summary", "base")}
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.glob("*/templates/**/*.html")
        if path not in own and re.search(r"\.errors\b|non_field_errors", path.read_text())
    ]
    assert offenders == []
