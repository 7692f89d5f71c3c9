"""A run of frames plays as video in Debian's Chromium (docs/architecture.md "Renders"): the MP4's duration is the
run's, the keyboard plays, pauses and steps frames, a seek decodes a frame and moves the position, and all of it
under the strict CSP (a violation would show as a console error)."""

from __future__ import annotations

from typing import Any

import pytest

from radshare.shares.models import Share
from radshare.studies.models import Study
from radshare.studies.services import store_instance
from radshare.studies.synthetic import encode, xa_run
from tests.e2e.journey import WCAG, tab_to
from tests.e2e.test_viewer_browser import logged_in_context, watch
from tests.recipients.conftest import ready_share
from tests.shares.helpers import ANNA

FRAMES = 60
FRAME_TIME = 0.0667  # seconds


def xa_share(organisation: Any, frames: int = FRAMES) -> tuple[Share, Study]:
    result = store_instance(organisation, encode(xa_run(ANNA, frames=frames, size=128)), source="upload")
    study = Study.objects.get(organisation=organisation, study_instance_uid=result.study_instance_uid)
    share, _ = ready_share(organisation, [study], delivery="url", email="")
    return share, study


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_an_xa_run_plays_pauses_steps_and_seeks(browser: Any, live_server: Any, organisation: Any) -> None:
    from playwright.sync_api import expect

    share, study = xa_share(organisation)
    context = logged_in_context(browser, live_server.url, share, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems, _ = watch(page)
    statuses: list[int] = []
    page.on("response", lambda r: statuses.append(r.status) if "/r/videos/" in r.url else None)
    page.goto(f"{live_server.url}/r/studies/{study.pk}/")
    video, position = page.locator("#viewer-video"), page.locator("#viewer-position")
    play = page.locator("#viewer-play")

    expect(page.locator("#viewer-playback")).to_be_visible()
    expect(play).to_have_text("Play")
    duration = page.evaluate(
        """async () => {
            const v = document.getElementById('viewer-video');
            if (v.readyState < 1) await new Promise((r) => v.addEventListener('loadedmetadata', r, { once: true }));
            return v.duration;
        }"""
    )
    assert abs(duration - FRAMES * FRAME_TIME) <= FRAME_TIME
    assert page.evaluate("document.getElementById('viewer-video').error") is None

    # Space plays: the video is shown and the position moves with the frames it presents.
    page.focus("#viewer-viewport")
    page.keyboard.press(" ")
    expect(play).to_have_text("Pause")
    expect(video).to_be_visible()
    expect(position).not_to_have_text(f"1 / {FRAMES}", timeout=5_000)
    assert page.evaluate("document.getElementById('viewer-video').paused") is False
    page.keyboard.press(" ")
    expect(play).to_have_text("Play")
    assert page.evaluate("document.getElementById('viewer-video').paused") is True
    expect(page.locator("#viewer-image")).to_be_visible()  # paused: the frame's JPEG

    # Home, then the right arrow steps one frame; the video waits at that frame, decoded.
    page.keyboard.press("Home")
    expect(position).to_have_text(f"1 / {FRAMES}")
    page.keyboard.press("ArrowRight")
    expect(position).to_have_text(f"2 / {FRAMES}")
    decoded = page.evaluate(
        """async (frameTime) => {
            const v = document.getElementById('viewer-video');
            const frame = new Promise((r) => v.requestVideoFrameCallback((now, meta) => r(meta.mediaTime)));
            v.currentTime = 30.5 * frameTime;  // a seek, as the slider makes: frame 31
            await new Promise((r) => v.addEventListener('seeked', r, { once: true }));
            return { mediaTime: await frame, readyState: v.readyState, currentTime: v.currentTime };
        }""",
        FRAME_TIME,
    )
    assert decoded["readyState"] >= 2
    assert abs(decoded["mediaTime"] - 30 * FRAME_TIME) < FRAME_TIME
    page.locator("#viewer-slider").fill("31")  # the position follows the slider; the video seeks with it
    expect(position).to_have_text(f"31 / {FRAMES}")
    assert (
        abs(page.evaluate("document.getElementById('viewer-video').currentTime") - 30.5 * FRAME_TIME) < 0.01
    )
    page.click("#viewer-frame-prev")
    expect(position).to_have_text(f"30 / {FRAMES}")

    # Speed: a button per rate, its state told to screen readers.
    page.click("button[data-rate='0.5']")
    expect(page.locator("button[data-rate='0.5']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("button[data-rate='1']")).to_have_attribute("aria-pressed", "false")
    assert page.evaluate("document.getElementById('viewer-video').playbackRate") == 0.5
    play.click()
    expect(play).to_have_text("Pause")
    expect(position).not_to_have_text(f"30 / {FRAMES}", timeout=5_000)
    play.click()

    assert 206 in statuses  # the browser fetched ranges
    assert problems == []
    context.close()


@pytest.mark.once
@pytest.mark.django_db(transaction=True)
def test_on_a_phone_the_run_plays_inline_from_the_keyboard_reachable_controls(
    browser: Any, live_server: Any, organisation: Any
) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect

    share, study = xa_share(organisation, frames=30)
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
    play, position = page.locator("#viewer-play"), page.locator("#viewer-position")
    expect(page.locator("#viewer-video")).to_have_attribute("playsinline", "")
    results = Axe().run(
        page, options={"runOnly": {"type": "tag", "values": WCAG}, "resultTypes": ["violations"]}
    )
    assert results.violations_count == 0, results.generate_report()

    tab_to(page, play)  # reached with the Tab key, its focus visible
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    page.keyboard.press("Enter")
    expect(play).to_have_text("Pause")
    expect(position).not_to_have_text("1 / 30", timeout=5_000)
    assert page.evaluate("document.fullscreenElement") is None  # inline, not full screen
    box = page.locator("#viewer-video").bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= 360
    page.keyboard.press("Enter")
    expect(play).to_have_text("Play")
    tab_to(page, page.locator("#viewer-frame-next"))
    shown = position.inner_text()
    page.keyboard.press("Enter")
    expect(position).to_have_text(f"{min(int(shown.split(' / ')[0]) + 1, 30)} / 30")
    assert problems == []
    context.close()
