"""The app in headless Chromium: upload a clip and see its label; sign to a fake webcam.

Needs Debian's `chromium` (scripts/test.sh installs it). Without it these tests skip on
a laptop but fail in CI (CI=true), so a CI image that lost its browser cannot pass
silently. Screenshots go to test-artifacts/screenshots/ (the README shows them).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from conftest import ROOT
from webapp.samples import signer_frames, write_video, write_y4m

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("SIGNLENS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
TIMEOUT_MS = 90_000  # generous: the CI machine has two cores shared with other jobs


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).is_file():
        message = "Chromium is not installed (bash scripts/test.sh installs Debian's chromium)."
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    folder = tmp_path_factory.mktemp("browser")
    # The fake camera plays this clip in a loop: 1.5 s still, 1.5 s of one hand moving, 1.5 s still.
    camera = write_y4m(folder / "camera.y4m", signer_frames(width=320, height=240, still_s=1.5, move_s=1.5), fps=10)
    args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    ]
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(folder / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=args,
            permissions=["camera"],
            viewport={"width": 1280, "height": 1000},
        )
        context.set_default_timeout(TIMEOUT_MS)
        yield context
        context.close()


def shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def test_upload_a_clip_and_see_the_label(browser, webapp_server, tmp_path):
    clip = write_video(tmp_path / "my-sign.mp4", signer_frames(path="wave", still_s=0.5, move_s=1.0))
    expected = webapp_server.engine.recognize(clip).top[0].gloss
    page = browser.new_page()
    page.goto(webapp_server.url, wait_until="load")
    page.get_by_role("tab", name="Upload").click()
    # The page also holds the webcam's image input; the upload is the one accepting video.
    page.locator("input[type=file][accept*=video]").set_input_files(str(clip))
    page.get_by_text("my-sign.mp4").first.wait_for()
    page.get_by_role("button", name="Recognize").click()
    label = page.locator("#upload-top5")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while expected not in label.inner_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert expected in label.inner_text()
    page.locator("#upload-frames img").first.wait_for()
    shoot(page, "upload.png")
    page.close()


def test_live_tab_turns_a_fake_webcam_sign_into_a_transcript_entry(browser, webapp_server):
    page = browser.new_page()
    page.goto(webapp_server.url, wait_until="load")
    page.get_by_text("Click to Access Webcam").click()
    # Gradio 6.31 labels the streaming webcam's start button "capture photo" (text "Record").
    page.locator("#live-camera button[aria-label='capture photo']").click()
    transcript = page.locator("#live-transcript")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while "%" not in transcript.inner_text() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert "%" in transcript.inner_text(), page.locator("#live-status").inner_text()
    page.locator("#live-frames img").first.wait_for()
    assert "from the end of the sign" in page.locator("#live-latency").inner_text()
    shoot(page, "live.png")
    page.close()
