"""The recipient's viewer in a real browser: keys, wheel, slider, swipe, window presets and zoom move the image
under the strict CSP (a violation would show as a console error), and on a phone the image fits the width."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from radshare.imaging import services as imaging
from radshare.imaging.render import render_file
from radshare.recipients import session
from radshare.shares.models import Share
from radshare.shares.services import prepare
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import ct_series, encode
from tests.recipients.conftest import ready_share
from tests.shares.helpers import ANNA, make_share

IMAGES = 6


def ct_share(organisation: Any) -> tuple[Share, Study]:
    for ds in ct_series(ANNA, count=IMAGES, size=64):
        result = store_instance(organisation, encode(ds), source="upload")
    study = Study.objects.get(organisation=organisation, study_instance_uid=result.study_instance_uid)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    return share, study


def logged_in_context(browser: Any, base: str, share: Share, **options: Any) -> Any:
    """A browser context with the session cookie of a recipient logged in to ``share`` (as in conftest)."""
    engine = __import__(settings.SESSION_ENGINE, fromlist=["SessionStore"])
    store = engine.SessionStore()
    now = timezone.now().timestamp()
    store[session.KEY] = {"share": share.pk, "stage": session.Stage.IN, "started": now, "seen": now}
    store.save()
    language = {"locale": "en-GB", "extra_http_headers": {"Accept-Language": "en"}}
    context = browser.new_context(**{**language, **options})
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": store.session_key, "url": base}])
    return context


def watch(page: Any) -> tuple[list[str], list[str]]:
    problems: list[str] = []
    images: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: images.append(r.url) if "/r/images/" in r.url else None)
    return problems, images


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_move_through_a_ct_zoom_and_window(browser: Any, live_server: Any, organisation: Any) -> None:
    from playwright.sync_api import expect

    share, study = ct_share(organisation)
    context = logged_in_context(browser, live_server.url, share, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems, requested = watch(page)
    page.goto(f"{live_server.url}/r/studies/{study.pk}/")
    image, position = page.locator("#viewer-image"), page.locator("#viewer-position")

    expect(position).to_have_text(f"1 / {IMAGES}")
    first = image.get_attribute("src")
    assert re.fullmatch(r"/r/images/\d+/0/preview\.jpg", first or "")
    page.focus("#viewer-viewport")
    page.keyboard.press("ArrowDown")
    expect(position).to_have_text(f"2 / {IMAGES}")
    assert image.get_attribute("src") != first
    assert "image 2 of 6" in (image.get_attribute("alt") or "")

    box = page.locator("#viewer-viewport").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 100)
    expect(position).to_have_text(f"3 / {IMAGES}")
    page.mouse.wheel(0, -100)
    expect(position).to_have_text(f"2 / {IMAGES}")

    page.keyboard.press("End")
    expect(position).to_have_text(f"{IMAGES} / {IMAGES}")
    page.keyboard.press("Home")
    expect(position).to_have_text(f"1 / {IMAGES}")
    page.locator("#viewer-slider").fill("4")
    expect(position).to_have_text(f"4 / {IMAGES}")
    assert page.locator("#viewer-slider").get_attribute("aria-valuetext") == "Image 4 of 6"

    page.click("button[data-kind=lung]")
    expect(image).to_have_attribute("src", re.compile(r"/r/images/\d+/0/lung\.jpg$"))
    expect(page.locator("button[data-kind=lung]")).to_have_attribute("aria-pressed", "true")
    expect(image).to_have_js_property("complete", True)  # (wait_for_function would need eval: CSP says no)
    expect(image).to_have_js_property("naturalWidth", 64)
    page.keyboard.press("ArrowUp")  # focus is on the preset button: the keys still move the stack
    expect(position).to_have_text(f"3 / {IMAGES}")
    assert (image.get_attribute("src") or "").endswith("/lung.jpg")
    page.click("button[data-kind=preview]")
    expect(image).to_have_attribute("src", re.compile(r"preview\.jpg$"))

    page.click("button[data-zoom=in]")
    assert "scale(1.25)" in page.evaluate("document.getElementById('viewer-image').style.transform")
    page.click("button[data-zoom=reset]")
    assert page.evaluate("document.getElementById('viewer-image').style.transform") == ""

    # Each image was fetched once: what was prefetched is shown from the page's copy (responses are no-store).
    previews = [u for u in requested if u.endswith("preview.jpg")]
    assert len(previews) == len(set(previews)) == IMAGES
    assert problems == []
    context.close()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_on_a_phone_the_image_fits_the_width_and_swipes(
    browser: Any, live_server: Any, organisation: Any
) -> None:
    from playwright.sync_api import expect

    share, study = ct_share(organisation)
    context = logged_in_context(
        browser,
        live_server.url,
        share,
        viewport={"width": 360, "height": 740},
        is_mobile=True,
        has_touch=True,
    )
    page = context.new_page()
    problems, _ = watch(page)
    page.goto(f"{live_server.url}/r/studies/{study.pk}/")
    position = page.locator("#viewer-position")
    expect(position).to_have_text(f"1 / {IMAGES}")
    expect(page.locator("#viewer-image")).to_have_js_property("complete", True)
    page.locator("#viewer-viewport").scroll_into_view_if_needed()
    box = page.locator("#viewer-image").bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 360
    assert box["width"] >= 340  # fills the width
    assert page.evaluate("document.documentElement.scrollWidth") <= 360  # nothing sideways

    # A swipe up moves forward through the stack (touch events, as a finger makes them).
    cdp = context.new_cdp_session(page)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.8
    cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
    for i in range(1, 11):
        cdp.send(
            "Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y - 10 * i}]}
        )
    cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    expect(position).not_to_have_text(f"1 / {IMAGES}")
    assert problems == []
    context.close()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("height", [768, 657])  # the screen; the window on it, with the browser's own bars
def test_on_a_laptop_screen_the_tools_are_in_sight_without_scrolling(
    browser: Any, live_server: Any, organisation: Any, height: int
) -> None:
    from playwright.sync_api import expect

    share, study = ct_share(organisation)
    context = logged_in_context(browser, live_server.url, share, viewport={"width": 1366, "height": height})
    page = context.new_page()
    problems, _ = watch(page)
    page.goto(f"{live_server.url}/r/studies/{study.pk}/")
    expect(page.locator("#viewer-image")).to_have_js_property("complete", True)
    assert page.evaluate("window.scrollY") == 0
    controls = [
        *(f"button[data-zoom={z}]" for z in ("out", "in", "reset")),
        *(f"button[data-kind={k}]" for k in ("preview", "soft", "lung", "bone")),
    ]
    for selector in controls:
        box = page.locator(selector).bounding_box()
        assert box is not None, selector
        assert box["y"] >= 0, selector
        assert box["y"] + box["height"] <= height, (selector, box)
        assert box["x"] + box["width"] <= 1366, selector
    if height == 768:  # the slider too, on the screen the issue names
        box = page.locator("#viewer-slider").bounding_box()
        assert box["y"] + box["height"] <= height, box
    assert problems == []
    context.close()


def _device(playwright: Any, name: str) -> dict[str, Any]:
    """Playwright's descriptor of a phone, for Chromium (the descriptor's own browser choice left out)."""
    return {k: v for k, v in playwright.devices[name].items() if k != "default_browser_type"}


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("device", ["iPhone 15", "Pixel 7"])
def test_on_a_phone_no_download_is_offered_only_why(
    playwright: Any, browser: Any, live_server: Any, organisation: Any, device: str
) -> None:
    from playwright.sync_api import expect

    share, study = ct_share(organisation)
    context = logged_in_context(browser, live_server.url, share, **_device(playwright, device))
    page = context.new_page()
    problems, _ = watch(page)
    why = "Downloading works on a computer (laptop or desktop), not on a phone or tablet."
    page.goto(f"{live_server.url}/r/studies/{study.pk}/")
    expect(page.locator("#viewer-position")).to_have_text(f"1 / {IMAGES}")
    expect(page.get_by_text(why)).to_be_visible()
    page.get_by_role("link", name="Back to your studies").click()
    page.wait_for_url(re.compile(r".*/r/studies$"))
    expect(page.get_by_text("To download them, open the link on a computer.")).to_be_visible()
    assert page.locator("a[href*='/r/download'], a[href$='.zip']").count() == 0
    assert page.get_by_role("link", name=re.compile("Download")).count() == 0
    page.goto(f"{live_server.url}/r/download?study={study.pk}")  # typed, or from history
    expect(page.get_by_text(why).first).to_be_visible()
    assert page.locator("a[href*='/r/download'], a[href$='.zip']").count() == 0
    assert problems == []
    context.close()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_a_share_revoked_while_viewing_leads_to_the_page_that_says_so(
    browser: Any, live_server: Any, organisation: Any
) -> None:
    from playwright.sync_api import expect

    from radshare.shares.services import Actor, revoke

    share, study = ct_share(organisation)
    context = logged_in_context(browser, live_server.url, share, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{live_server.url}/r/studies/{study.pk}/")
    image = page.locator("#viewer-image")
    expect(image).to_have_js_property("complete", True)
    revoke(share, Actor())
    # The next image the viewer loads is refused (410): the viewer reloads, and the server says the link ended.
    page.evaluate("document.getElementById('viewer-image').src += '?next'")
    page.wait_for_url(re.compile(r".*/r/ended$"))
    expect(page.locator("h1")).to_have_text("This link no longer works")
    expect(page.get_by_text("Ask Hospital A for a new link")).to_be_visible()
    expect(page.get_by_role("link", name="+31 20 123 4567")).to_be_visible()
    context.close()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_window_presets_made_while_the_page_is_open_are_offered_without_reloading(
    browser: Any, live_server: Any, organisation: Any
) -> None:
    from playwright.sync_api import expect

    for ds in ct_series(ANNA, count=IMAGES, size=64):
        result = store_instance(organisation, encode(ds), source="upload")
    study = Study.objects.get(organisation=organisation, study_instance_uid=result.study_instance_uid)
    # The share is ready after the first render pass; the window presets come in a second one.
    for job in imaging.claim_pending():
        imaging.record_outcome(render_file(job), job.attempt)
    new = make_share(organisation, [study], delivery="url", email="")
    assert prepare(new.share.pk) == "ready"
    dutch = {"locale": "nl-NL", "extra_http_headers": {"Accept-Language": "nl"}}
    context = logged_in_context(
        browser, live_server.url, new.share, viewport={"width": 1280, "height": 900}, **dutch
    )
    page = context.new_page()
    problems, _ = watch(page)
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/presets.json") else None)
    page.goto(f"{live_server.url}/r/studies/{study.pk}/")
    expect(page.locator("#viewer-position")).to_have_text(f"1 / {IMAGES}")
    expect(page.locator("#viewer-presets")).to_be_hidden()

    for job in imaging.claim_pending(presets=True):  # the worker's second pass, while the page is open
        imaging.record_outcome(render_file(job), job.attempt)
    lung = page.get_by_role("button", name="Long", exact=True)  # a Dutch browser: the page is in Dutch
    expect(lung).to_be_visible(timeout=15_000)
    expect(page.get_by_role("group", name="Contrast")).to_be_visible()
    lung.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#viewer-image")).to_have_attribute("src", re.compile(r"/r/images/\d+/0/lung\.jpg$"))
    expect(lung).to_have_attribute("aria-pressed", "true")
    # Once every series has its presets the page stops asking.
    count = len(asked)
    page.wait_for_timeout(5_000)
    assert len(asked) == count >= 1
    assert problems == []
    context.close()
