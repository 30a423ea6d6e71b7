"""The phone page in a real browser: headless Chromium (Debian's package, driven by Playwright) with
a fake camera playing a Y4M clip of a synthetic street scene, and speech recorded by an init
script wrapping `speechSynthesis.speak`. Pressing Start (from the keyboard) makes the page speak
the server's cue for the scene in view; while the scene stays the same nothing more is said.

`ROADSCENE_SCREENSHOT=docs/images/serve-page.png` also saves the page's screenshot there."""

from __future__ import annotations

import copy
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from serve_helpers import TEST_MAX_NEW_TOKENS, scene_pixels, write_y4m

from roadscene.data.examples import VisionTextExample
from roadscene.predict.describe import describe_prompt
from roadscene.serve import ServeSettings
from roadscene.serve.app import create_app
from roadscene.targets import cue_for_parsed, parse_response

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (apt-get install chromium)"
    ),
]
SCENE = 4  # a scene of the built-in distribution; any one works, the test asks the server
CLIP_SIZE = 240

# Recorded, then passed on: speech and vibration as the page asked for them.
RECORDER = """
window.__spoken = [];
window.__vibrations = [];
const speak = window.speechSynthesis.speak.bind(window.speechSynthesis);
window.speechSynthesis.speak = (utterance) => {
  window.__spoken.push({ text: utterance.text, rate: utterance.rate });
  try { speak(utterance); } catch (err) { /* no audio device in CI */ }
};
navigator.vibrate = (pattern) => { window.__vibrations.push(pattern); return true; };
"""


def _wait_for(page, condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        page.wait_for_timeout(100)  # lets Playwright deliver its events meanwhile


def test_start_speaks_the_cue_for_the_scene_in_view_once(
    serve_predictor, live_server, tmp_path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    scene = scene_pixels(SCENE, CLIP_SIZE)
    clip = tmp_path / "street.y4m"
    write_y4m(clip, np.repeat(scene[None], 15, axis=0))  # one second, looped: a still scene

    # the same model, noting the frames it is given (the page's uploads, as the server read them)
    seen: list[Image.Image] = []
    recording = copy.copy(serve_predictor)

    def generate_batch(examples, decoding):
        seen.extend(example.images[0].copy() for example in examples)
        return serve_predictor.generate_batch(examples, decoding)

    recording.generate_batch = generate_batch
    settings = ServeSettings(max_new_tokens=TEST_MAX_NEW_TOKENS, reminder_s=600)
    responses = []
    with (
        live_server(create_app(settings, recording)) as server,
        sync_api.sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream", f"--use-file-for-fake-video-capture={clip}",
            ],
        )  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 430, "height": 900})
            page.add_init_script(RECORDER)
            page.on("response", lambda r: responses.append(r) if "/v1/describe" in r.url else None)
            page.goto(server.url + "/")
            # settings through their form: a frame every half second
            page.get_by_text("Settings").click()
            page.get_by_label("Seconds between frames").fill("0.5")
            page.get_by_label("How much to say").select_option("normal")
            # the settings are kept: after a reload, Tab reaches Start first, Enter presses it
            page.reload()
            assert page.get_by_label("Seconds between frames").input_value() == "0.5"
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.id") == "start"
            page.keyboard.press("Enter")

            _wait_for(page, lambda: len(responses) >= 1, "the first answer")
            first = responses[0].json()
            _wait_for(page, lambda: page.evaluate("window.__spoken.length") >= 2, "speech")
            # then the scene stays the same for three more frames
            _wait_for(page, lambda: len(responses) >= 4, "three more answers")
            live_region = page.get_by_role("status").and_(page.locator("#answer"))
            assert live_region.inner_text() == first["speak"]["text"]
            assert live_region.get_attribute("aria-live") == "off"  # the page's own voice
            shot = tmp_path / "serve-page.png"
            page.screenshot(path=str(shot), full_page=True)
            page.get_by_role("button", name="Stop").press("Enter")
            page.get_by_role("button", name="Start").wait_for()
            page.wait_for_timeout(300)
            spoken = page.evaluate("window.__spoken")
            vibrations = page.evaluate("window.__vibrations")
            later = [r.json() for r in responses[1:4]]
            # with a screen reader the page stays silent and the live region speaks instead
            page.get_by_text("Settings").click()
            page.get_by_label("my screen reader").check()
            assert live_region.get_attribute("aria-live") == "assertive"
        finally:
            browser.close()

    # pressing Start spoke: "Starting.", then the server's answer for the first frame
    assert spoken[0]["text"] == "Starting."
    assert first["speak"]["say"] and first["speak"]["reason"] == "first"
    assert spoken[1]["text"] == first["speak"]["text"]
    assert spoken[1]["text"].startswith(first["cue"]["text"])
    # the unchanged scene was not spoken again (only "Stopped." when the walk ended)
    assert all(body["cue"] == first["cue"] for body in later)
    assert all((b["speak"]["say"], b["speak"]["reason"]) == (False, "unchanged") for b in later)
    assert [s["text"] for s in spoken[2:]] == ["Stopped."]
    # vibration exactly for an urgent cue
    assert len(vibrations) == (1 if first["cue"]["urgency"] == "high" else 0)

    # the frame the page sent is the scene in view ...
    uploaded = seen[0]
    assert uploaded.size == (CLIP_SIZE, CLIP_SIZE)
    difference = np.abs(np.asarray(uploaded, dtype=np.int16) - scene.astype(np.int16))
    assert difference.mean() < 8, difference.mean()
    # ... and the spoken cue is the model's cue for that frame, asked directly
    example = VisionTextExample(
        images=[uploaded], prompt=describe_prompt(serve_predictor.card), image_ref="frame"
    )
    [answer] = serve_predictor.generate_batch([example], settings.decoding())
    assert answer == first["answer"]
    assert cue_for_parsed(parse_response(answer)).text == first["cue"]["text"]

    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("ROADSCENE_SCREENSHOT")
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target)
