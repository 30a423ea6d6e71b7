"""Spoken cues through the espeak-ng command-line synthesiser (Debian: `apt-get install espeak-ng`).

espeak-ng is a system program, not a Python package: it is found on PATH when needed, and its
absence or failure is one clear error, never a silent no-op.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from roadscene.errors import InputError
from roadscene.io import atomic_write

ESPEAK = "espeak-ng"
INSTALL_HINT = (
    "install it with `apt-get install espeak-ng` (Debian/Ubuntu) or `brew install espeak-ng`"
)


def espeak_path() -> str | None:
    """The espeak-ng executable, or None when it is not installed."""
    return shutil.which(ESPEAK)


def _require_espeak() -> str:
    path = espeak_path()
    if path is None:
        raise InputError(f"speech needs {ESPEAK}, which is not installed; {INSTALL_HINT}")
    return path


def _run(args: list[str], voice: str | None) -> subprocess.CompletedProcess[str]:
    command = [_require_espeak()]
    if voice:
        command += ["-v", voice]
    command += args
    result = subprocess.run(
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120
    )
    if result.returncode != 0:
        message = (result.stderr or result.stdout).strip().splitlines()
        reason = message[-1] if message else f"exit code {result.returncode}"
        if voice and "voice" in reason.lower():
            raise InputError(
                f"{ESPEAK} has no voice '{voice}' ({reason}); list them with `{ESPEAK} --voices`",
                field="voice",
            )
        raise InputError(f"{ESPEAK} failed: {reason}")
    return result


def check_voice(voice: str) -> None:
    """Fail early (before any model work) when espeak-ng does not know `voice`."""
    _run(["-q", "--", "ok"], voice)


def is_wav_file(path: Path) -> bool:
    """Whether `path` is a WAV file (a spoken-cue file may replace one, nothing else)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(12)
    except OSError:
        return False
    return header[:4] == b"RIFF" and header[8:12] == b"WAVE"


def synthesize_wav(text: str, out: str | Path, *, voice: str | None = None) -> Path:
    """Write `text` spoken by espeak-ng to the WAV file `out` (atomically)."""
    out = Path(out)
    if not text.strip():
        raise InputError("nothing to say: the text is empty")
    with tempfile.TemporaryDirectory(prefix="roadscene-speech-") as tmp:
        # espeak-ng writes a complete RIFF header only when it writes to a file (not --stdout).
        wav = Path(tmp) / "speech.wav"
        _run(["-w", str(wav), "--", text], voice)
        data = wav.read_bytes()
    if len(data) <= 44:
        raise InputError(f"{ESPEAK} produced no audio for the text", path=out)
    with atomic_write(out, "wb", ours=is_wav_file, what="a WAV file") as handle:
        handle.write(data)
    return out


def speak(text: str, *, voice: str | None = None) -> None:
    """Say `text` on the default audio device."""
    if not text.strip():
        return
    result = _run(["--", text], voice)
    # espeak-ng exits 0 even when no sound device opens; it only reports that on stderr.
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error")]
    if errors or "cannot find card" in result.stderr:
        raise InputError(
            f"{ESPEAK} could not play audio (no sound device?): "
            f"{(errors or ['ALSA found no sound card'])[-1]}; use --wav FILE to save it instead"
        )
