"""The recipient's viewer in a real browser: keys, wheel, slider, swipe, window presets and zoom move the image
under the strict CSP (a violation would show as a console error), and on a phone the image fits the width."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from radshare.recipients import session
from radshare.shares.models import Share
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import ct_series, encode
from tests.recipients.conftest import ready_share
from tests.shares.helpers import ANNA

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
    context = browser.new_context(locale="en-GB", extra_http_headers={"Accept-Language": "en"}, **options)
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
