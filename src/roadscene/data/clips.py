"""Clips: a data row's short video (MP4, WebM, ...) or list of frame images, sampled to N frames.

A row names `video` (decoded with PyAV) or `frames` (image paths, opened with `open_image`)
instead of one `image`. N frames (`ClipSettings.frames`, default 8) are taken at evenly spaced
frame numbers from the first frame to the last (`sample_indices`), with their timestamps; a
model family passes them with that metadata to its own video path. Nothing is ever invented:
a clip with fewer frames than asked, a video that cannot be decoded or a frame that is missing is
an InputError naming it (with `on_bad_image="skip"`, the row is skipped and counted). A video's
frames are counted by decoding it (WebM headers say 0 frames); only the sampled frames are
converted to RGB.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from roadscene.data.images import MAX_IMAGE_PIXELS, open_image
from roadscene.errors import InputError, exception_summary
from roadscene.io import regular_file

if TYPE_CHECKING:
    from PIL import Image

DEFAULT_CLIP_FRAMES = 8
#: Frame rate of a `frames` list that gives none: one frame per second.
DEFAULT_FRAMES_FPS = 1.0
#: Frames a video may have: its frames are counted by decoding, so a clip is meant to be short.
MAX_VIDEO_FRAMES = 20_000

FramesSeen = Literal["all", "last"]


class ClipSettings(BaseModel):
    """How clips become model inputs: how many frames are sampled, and which of them the model
    sees (`last`: only the last sampled frame, the still-image control of a clip model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frames: int = Field(
        DEFAULT_CLIP_FRAMES, ge=1, le=64, description="Frames sampled evenly from each clip."
    )
    seen: FramesSeen = Field(
        "all", description="all: every sampled frame; last: the last one only (a control)."
    )


@dataclass(frozen=True)
class Clip:
    """Sampled frames of a clip in time order, with where they were taken: `indices` are frame
    numbers in the source (of `total_frames` at `fps`), `timestamps` seconds from its start."""

    frames: tuple[Image.Image, ...]
    timestamps: tuple[float, ...]
    indices: tuple[int, ...]
    fps: float
    total_frames: int

    @property
    def duration(self) -> float:
        """Length of the source clip in seconds."""
        return self.total_frames / self.fps

    def metadata(self) -> dict[str, Any]:
        """The `video_metadata` transformers' video processors take for already sampled frames
        (their prompt timestamps are `frames_indices[i] / fps`)."""
        return {
            "total_num_frames": self.total_frames,
            "fps": self.fps,
            "duration": self.duration,
            "frames_indices": list(self.indices),
        }

    def last_only(self) -> Clip:
        """The clip reduced to its last sampled frame (same source, same timing)."""
        return replace(
            self,
            frames=self.frames[-1:],
            timestamps=self.timestamps[-1:],
            indices=self.indices[-1:],
        )

    def with_frames(self, frames: Sequence[Image.Image]) -> Clip:
        """The same clip with other pixels (e.g. augmented), frame for frame."""
        if len(frames) != len(self.frames):
            raise ValueError(f"{len(frames)} frames for a clip of {len(self.frames)}")
        return replace(self, frames=tuple(frames))


@dataclass(frozen=True)
class ClipSource:
    """Where a data row's clip comes from, before it is read: a video file or frame images
    (paths as written and resolved), and the settings to sample it with."""

    kind: Literal["video", "frames"]
    refs: tuple[str, ...]
    paths: tuple[Path, ...]
    settings: ClipSettings
    fps: float | None = None  # frames lists: their frame rate (None: DEFAULT_FRAMES_FPS)

    def open(self, *, source: Path | None = None, line: int | None = None) -> Clip:
        """The sampled clip; missing, undecodable or too short -> InputError naming it."""
        frames = self.settings.frames
        if self.kind == "video":
            clip = open_video_clip(self.paths[0], frames, source=source, line=line)
        else:
            clip = open_frames_clip(
                self.paths, frames, self.fps or DEFAULT_FRAMES_FPS, source=source, line=line
            )
        return clip.last_only() if self.settings.seen == "last" else clip


def sample_indices(total: int, count: int) -> list[int]:
    """`count` frame numbers evenly spaced from the first frame (0) to the last (`total - 1`),
    rounded to whole frames; needs `total >= count` (frames are never repeated)."""
    if count < 1 or total < count:
        raise ValueError(f"cannot sample {count} distinct frames from {total}")
    if count == 1:
        return [total - 1]  # one frame: the latest state of the clip
    return [round(i * (total - 1) / (count - 1)) for i in range(count)]


def too_few_frames(have: int, asked: int, what: str) -> str:
    return (
        f"{what} has {have} frame{'s' if have != 1 else ''}, fewer than the {asked} asked "
        "(clip frames); frames are never repeated or made up: use a longer clip or fewer frames"
    )


def open_frames_clip(
    paths: Sequence[Path],
    count: int,
    fps: float = DEFAULT_FRAMES_FPS,
    *,
    source: Path | None = None,
    line: int | None = None,
) -> Clip:
    """`count` of the frame images `paths` (in time order, `fps` apart), each opened with
    `open_image` (a missing or unreadable frame names itself and the row)."""
    if len(paths) < count:
        where = f" (row {source}:{line})" if source is not None else ""
        raise InputError(too_few_frames(len(paths), count, "the frame list") + where, path=paths[0])
    indices = sample_indices(len(paths), count)
    frames = tuple(open_image(paths[i], source=source, line=line) for i in indices)
    return Clip(
        frames=frames,
        timestamps=tuple(i / fps for i in indices),
        indices=tuple(indices),
        fps=fps,
        total_frames=len(paths),
    )


@dataclass(frozen=True)
class VideoTimeline:
    """What decoding a video found: each frame's time in seconds (from the first frame) and the
    frame rate."""

    times: tuple[float, ...]
    fps: float


def _video_error(err: BaseException) -> str:
    if isinstance(err, MemoryError):
        return "video does not fit in memory"
    return f"undecodable video: {exception_summary(err)}"


def _open_container(path: Path, where: str) -> Any:
    try:
        import av
    except ImportError:  # a dependency of roadscene; said plainly if the install lacks it
        raise InputError("reading videos needs PyAV: pip install av", path=path) from None
    try:
        regular_file(path, "video")
    except InputError as err:
        raise InputError(f"{err.reason}{where}", path=path) from None
    try:
        container = av.open(str(path))
    except Exception as err:
        raise InputError(f"{_video_error(err)}{where}", path=path) from None
    if not container.streams.video:
        container.close()
        raise InputError(f"no video stream in this file{where}", path=path)
    return container


def read_timeline(path: Path, *, where: str = "") -> VideoTimeline:
    """Decode `path` once to count its frames and read their times (no pixels converted)."""
    path = Path(path)
    container = _open_container(path, where)
    try:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > MAX_IMAGE_PIXELS:
            raise InputError(
                f"video frames of {width} x {height} pixels are over the limit of "
                f"{MAX_IMAGE_PIXELS:,} pixels{where}",
                path=path,
            )
        times: list[float] = []
        for frame in container.decode(stream):
            times.append(float(frame.time) if frame.time is not None else float(len(times)))
            if len(times) > MAX_VIDEO_FRAMES:
                raise InputError(
                    f"video has more than {MAX_VIDEO_FRAMES:,} frames; cut it into short clips"
                    f"{where}",
                    path=path,
                )
        rate = stream.average_rate
    except InputError:
        raise
    except Exception as err:
        raise InputError(f"{_video_error(err)}{where}", path=path) from None
    finally:
        container.close()
    if not times:
        raise InputError(f"no frame of this video could be decoded{where}", path=path)
    start = times[0]
    times = [t - start for t in times]
    if rate is not None and float(rate) > 0:
        fps = float(rate)
    elif len(times) > 1 and times[-1] > 0:
        fps = (len(times) - 1) / times[-1]
    else:
        fps = DEFAULT_FRAMES_FPS
    return VideoTimeline(tuple(times), fps)


def read_video_frames(
    path: Path, indices: Sequence[int], *, where: str = ""
) -> Iterator[Image.Image]:
    """The frames numbered `indices` (ascending; repeats allowed) as RGB images, decoded in one
    pass; a frame is converted only when it is wanted."""
    wanted = sorted(indices)
    if not wanted:
        return
    container = _open_container(Path(path), where)
    try:
        stream = container.streams.video[0]
        position = 0
        for number, frame in enumerate(container.decode(stream)):
            if number < wanted[position]:
                continue
            image = frame.to_image()
            while position < len(wanted) and wanted[position] == number:
                yield image
                position += 1
            if position == len(wanted):
                return
    except Exception as err:
        raise InputError(f"{_video_error(err)}{where}", path=path) from None
    finally:
        container.close()
    raise InputError(f"video ended before frame {wanted[position]}{where}", path=path)


def open_video_clip(
    path: Path, count: int, *, source: Path | None = None, line: int | None = None
) -> Clip:
    """`count` frames of the video at `path`, evenly spaced from its first frame to its last."""
    where = f" (row {source}:{line})" if source is not None else ""
    timeline = read_timeline(path, where=where)
    total = len(timeline.times)
    if total < count:
        raise InputError(too_few_frames(total, count, "video") + where, path=path)
    indices = sample_indices(total, count)
    frames = tuple(read_video_frames(path, indices, where=where))  # RGB already
    return Clip(
        frames=frames,
        timestamps=tuple(timeline.times[i] for i in indices),
        indices=tuple(indices),
        fps=timeline.fps,
        total_frames=total,
    )


def write_video(path: Path, frames: Sequence[Any], fps: float) -> None:
    """Write RGB frames ((H, W, 3) uint8 arrays, even sides) as a VP9 WebM clip (libvpx-vp9,
    constant quality). VP9 is BSD-licensed, so the synthetic data needs no GPL encoder."""
    import av

    frames = list(frames)
    height, width = frames[0].shape[:2]
    options = {"crf": "12", "b": "0", "deadline": "good", "cpu-used": "4", "row-mt": "1"}
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=round(fps), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for pixels in frames:
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
