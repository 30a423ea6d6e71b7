"""`roadscene describe` and spoken cues (espeak-ng)."""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import jsonschema
import pytest

from roadscene.errors import InputError
from roadscene.predict import speech
from roadscene.schema import form_json_schema
from roadscene.targets import parse_response
from roadscene.targets.cue import cue_for_parsed

# tiny models gain nothing from threads; on a shared box one thread avoids oversubscription
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}

needs_espeak = pytest.mark.skipif(
    speech.espeak_path() is None, reason="espeak-ng not installed (apt-get install espeak-ng)"
)


def _duration_s(path: Path) -> float:
    with wave.open(str(path)) as audio:
        assert audio.getnchannels() >= 1 and audio.getsampwidth() == 2
        assert audio.getnframes() > 0
        return audio.getnframes() / audio.getframerate()


@pytest.fixture(scope="module")
def two_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from PIL import Image

    folder = tmp_path_factory.mktemp("describe")
    paths = [folder / "street.png", folder / "crossing.jpg"]
    Image.new("RGB", (64, 48), (90, 120, 30)).save(paths[0])
    Image.new("RGB", (40, 56), (10, 10, 200)).save(paths[1])
    return paths


@needs_espeak
def test_wav_is_speech_of_plausible_length(tmp_path) -> None:
    short = speech.synthesize_wav("Path clear.", tmp_path / "short.wav")
    text = "Road crossing ahead: stop and check for traffic. Obstacle close ahead: step left."
    long = speech.synthesize_wav(text, tmp_path / "long.wav", voice="en-us")
    short_s, long_s = _duration_s(short), _duration_s(long)
    assert 0.3 < short_s < 3.0
    words = len(text.split())
    assert 0.15 * words < long_s < 1.0 * words  # ordinary speech: ~2-4 words a second
    assert long_s > 2 * short_s


@needs_espeak
def test_unknown_voice_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(InputError, match="no voice 'xx-nonexistent'"):
        speech.check_voice("xx-nonexistent")
    with pytest.raises(InputError, match="empty"):
        speech.synthesize_wav("  ", tmp_path / "x.wav")
    assert not (tmp_path / "x.wav").exists()


def test_missing_espeak_is_a_clear_error(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(InputError, match="apt-get install espeak-ng"):
        speech.synthesize_wav("Path clear.", tmp_path / "x.wav")
    with pytest.raises(InputError, match="not installed"):
        speech.speak("Path clear.")


@pytest.mark.slow
@needs_espeak
def test_describe_json_and_wav(run_cli, tiny_smolvlm_dir, two_images, tmp_path) -> None:
    out_wav = tmp_path / "cues.wav"
    result = run_cli(
        "describe", *two_images, "--model", tiny_smolvlm_dir, "--json", "--wav", out_wav,
        "--relation-from-fields", check=True, env=ONE_THREAD,
    )  # fmt: skip
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["image"] for row in rows] == [str(p) for p in two_images]
    schema = form_json_schema()
    for row in rows:
        parsed = parse_response(row["answer"])
        assert parsed.complete  # an untrained model, but the grammar holds
        assert (row["sidewalk"], row["road"], row["relation"]) == (
            parsed.sidewalk,
            parsed.road,
            parsed.relation,
        )
        assert row["cue"] == cue_for_parsed(parsed).to_dict()
        assert row["latency_s"] > 0
        jsonschema.validate(row["annotation"], schema)
    # the WAV says both cues: longer than either alone would plausibly be
    words = sum(len(row["cue"]["text"].split()) for row in rows)
    assert 0.15 * words < _duration_s(out_wav) < 1.0 * words


@pytest.mark.slow
def test_describe_text_output(run_cli, tiny_smolvlm_dir, two_images) -> None:
    result = run_cli(
        "describe", two_images[0], "--model", tiny_smolvlm_dir, check=True, env=ONE_THREAD
    )
    lines = result.stdout.splitlines()
    assert lines[0] == str(two_images[0])
    labels = [line.split(":")[0].strip() for line in lines[1:]]
    assert labels == ["cue", "fields", "nearby", "caption", "latency"]
    assert lines[-1].strip().startswith("latency:") and lines[-1].endswith(" s")


def test_missing_image_fails_before_loading_anything(run_cli, two_images, tmp_path) -> None:
    missing = tmp_path / "nope.png"
    result = run_cli("describe", two_images[0], missing, "--model", tmp_path / "no-model")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"error: {missing}: image not found"


def test_bad_options_are_clear_errors(run_cli, two_images, tmp_path) -> None:
    result = run_cli("describe", two_images[0], "--model", "m", "--wav", tmp_path / "a.mp3")
    assert result.returncode == 2 and "must end in .wav" in result.stderr
    result = run_cli("describe", two_images[0], "--model", "m", "--voice", "en-us")
    assert result.returncode == 2 and "--voice needs --speak or --wav" in result.stderr
