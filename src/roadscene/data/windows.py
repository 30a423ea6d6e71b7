"""Windows along a longer clip (`roadscene describe clip.mp4`, a folder of frames): consecutive
spans of a few seconds, each sampled to the frames a clip model takes, as a clip of its own.

A frame belongs to the window its time falls in; a window with at least N frames gets N of them
evenly spaced (`sample_indices`), timed from the window's start; a last window with fewer is left
out and counted (never padded). A video is decoded once to time its frames, then once more for
the sampled frames, holding only the current window's.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roadscene.data.clips import (
    Clip,
    read_timeline,
    read_video_frames,
    sample_indices,
    too_few_frames,
)
from roadscene.data.images import open_image
from roadscene.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

#: File suffixes read as videos (anything else is an image; a folder is a list of frames).
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".webm", ".mkv", ".mov", ".avi")
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class ClipWindow:
    """One window of a longer clip: its span in seconds and its sampled frames (timed from the
    window's start, as a clip of its own)."""

    start: float
    end: float
    clip: Clip


@dataclass(frozen=True)
class PlannedWindow:
    """A window before its frames are read: its span, the numbers of its sampled frames, and its
    first frame's number and frame count (the numbering of its own clip)."""

    start: float
    end: float
    picks: tuple[int, ...]
    first: int
    frames: int


@dataclass(frozen=True)
class WindowPlan:
    """How a clip splits into windows, and what is left over (a last window too short to
    sample)."""

    windows: tuple[PlannedWindow, ...]
    fps: float
    skipped_frames: int
    skipped_seconds: float


def plan_windows(times: Sequence[float], fps: float, count: int, window_s: float) -> WindowPlan:
    """Consecutive windows of `window_s` seconds over frames at `times`; each with at least
    `count` frames gets `count` of them evenly spaced (`sample_indices`); a last window with
    fewer is left out (and counted)."""
    if window_s <= 0:
        raise ValueError(f"window length must be positive; got {window_s}")
    groups: dict[int, list[int]] = {}
    for number, time in enumerate(times):
        groups.setdefault(int(time / window_s + 1e-6), []).append(number)
    windows, skipped, skipped_s = [], 0, 0.0
    for key in sorted(groups):
        members = groups[key]
        if len(members) < count:
            skipped += len(members)
            skipped_s += len(members) / fps
            continue
        picks = tuple(members[i] for i in sample_indices(len(members), count))
        start = key * window_s
        end = min(start + window_s, times[members[-1]] + 1.0 / fps)  # a last, shorter window
        windows.append(PlannedWindow(start, end, picks, members[0], len(members)))
    return WindowPlan(tuple(windows), fps, skipped, skipped_s)


def _window(window: PlannedWindow, frames: Sequence[Image.Image], fps: float) -> ClipWindow:
    local = tuple(pick - window.first for pick in window.picks)
    clip = Clip(
        frames=tuple(frames),
        timestamps=tuple(i / fps for i in local),
        indices=local,
        fps=fps,
        total_frames=window.frames,
    )
    return ClipWindow(window.start, window.end, clip)


def _no_window(what: str, plan: WindowPlan, count: int, window_s: float, path: Path) -> InputError:
    frames = round(window_s * plan.fps)
    return InputError(
        f"{what}: a window of {window_s:g} s holds about {frames} frames at {plan.fps:g} fps, "
        f"fewer than the {count} the model takes; use a longer --window-seconds"
        + (" or give --fps" if what == "frame folder" else ""),
        path=path,
    )


def video_window_plan(path: Path, count: int, window_s: float) -> WindowPlan:
    """The windows of a video (decoded once to time its frames); none -> InputError."""
    timeline = read_timeline(path)
    if len(timeline.times) < count:
        raise InputError(too_few_frames(len(timeline.times), count, "video"), path=path)
    plan = plan_windows(timeline.times, timeline.fps, count, window_s)
    if not plan.windows:
        raise _no_window("video", plan, count, window_s, path)
    return plan


def video_windows(path: Path, plan: WindowPlan) -> Iterator[ClipWindow]:
    """The planned windows of a video, decoded in one pass (a window's frames are held only
    until it is complete)."""
    wanted = sorted({pick for window in plan.windows for pick in window.picks})
    frames = read_video_frames(path, wanted)
    decoded: dict[int, Image.Image] = {}
    position = 0
    for window in plan.windows:
        while any(p not in decoded for p in window.picks):
            decoded[wanted[position]] = next(frames)
            position += 1
        yield _window(window, [decoded.pop(p) for p in window.picks], plan.fps)


def folder_frames(folder: Path) -> list[Path]:
    """The frame images of a folder, in name order; none -> InputError."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in _FRAME_SUFFIXES)
    if not paths:
        raise InputError(
            f"no frame images ({', '.join(_FRAME_SUFFIXES)}) in this folder", path=folder
        )
    return paths


def frames_window_plan(
    paths: Sequence[Path], count: int, window_s: float, fps: float
) -> WindowPlan:
    """The windows of a frame list `fps` apart; none -> InputError."""
    if len(paths) < count:
        raise InputError(
            too_few_frames(len(paths), count, "the frame folder"), path=paths[0].parent
        )
    plan = plan_windows([i / fps for i in range(len(paths))], fps, count, window_s)
    if not plan.windows:
        raise _no_window("frame folder", plan, count, window_s, paths[0].parent)
    return plan


def frames_windows(paths: Sequence[Path], plan: WindowPlan) -> Iterator[ClipWindow]:
    """The planned windows of a frame list, each frame opened with `open_image`."""
    for window in plan.windows:
        yield _window(window, [open_image(paths[p]) for p in window.picks], plan.fps)
