"""Data rows of the task files `roadscene data build` writes, read as records (image not yet read).

Tasks
- `caption`: `captions_{split}.json` (array of {image, caption}); prompt "Describe this road
  scene."; answer = caption.
- `bvpi`: `bvpi_sft_{split}.jsonl` (image, prompt, response, ...); answer = response.
- `annotated`: `bvpi_sft_{split}.jsonl`; the prompt carries the annotation (fields and near/far
  objects, parsed from the response) as JSON; the answer is the navigation cue for those fields
  followed by the context caption (annotation-conditioned captioning).

Any of them may also be read from the conversational format (`{"messages": [...], "images":
[...]}`, `roadscene.data.formats`): the user turn's text is the prompt, the assistant turn's
text the answer, whatever the task; relative image paths there are relative to the file's folder.

Instead of `image`, a row may name a clip: `video` (a video file) or `frames` (a list of frame
images in time order, with an optional `fps`); `clip` settings say how many frames are sampled
(`roadscene.data.clips`). Such a row's `image` is the video path, or its first frame's, as
written.

Image, video and frame paths are resolved against `image_root` (absolute paths are kept).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from roadscene.data.clips import ClipSettings, ClipSource
from roadscene.data.images import resolve_image
from roadscene.errors import InputError
from roadscene.io import read_records
from roadscene.targets import CAPTION_PROMPT, DEFAULT_PROMPT, cue_for_parsed, parse_response

Task = Literal["caption", "bvpi", "annotated"]
TASKS: tuple[str, ...] = ("caption", "bvpi", "annotated")
#: Tasks whose answers are structured (fields, objects): grammar, cue and strict metrics apply.
STRUCTURED_TASKS: tuple[str, ...] = ("bvpi",)

ANNOTATED_PROMPT = (
    "Annotation: {annotation}\nGiven this annotation, tell a blind pedestrian what to do, then "
    "describe the scene."
)


@dataclass
class ExampleRecord:
    """One data row before its image is read."""

    image: str  # as written in the data file
    image_path: Path  # resolved
    prompt: str
    answer: str | None
    source: Path
    line: int
    meta: dict[str, Any] = field(default_factory=dict)
    #: whether the prompt came from the row (False: the task's or the model's default prompt)
    prompt_given: bool = True
    #: the row's clip (a video or frame list) when it names one instead of an image
    clip: ClipSource | None = None

    def reference(self) -> dict[str, Any]:
        """How output lines name the row's input: `image`, plus `video` or `frames` for a clip
        (as written in the data file)."""
        if self.clip is None:
            return {"image": self.image}
        if self.clip.kind == "video":
            return {"image": self.image, "video": self.clip.refs[0]}
        return {"image": self.image, "frames": list(self.clip.refs)}


def task_file(task: str, split: str, data_dir: str | Path) -> Path:
    """The data file a task reads for a split."""
    name = f"captions_{split}.json" if task == "caption" else f"bvpi_sft_{split}.jsonl"
    return Path(data_dir) / name


def default_prompt(task: str) -> str:
    """The prompt of a task's rows that carry none (before any model-specific prompt)."""
    return CAPTION_PROMPT if task == "caption" else DEFAULT_PROMPT


def detect_task(rows: list[tuple[int, dict[str, Any]]]) -> str:
    """bvpi when rows carry a `response` or a `prompt`, caption when they carry a `caption`."""
    first = rows[0][1]
    if "caption" in first and "response" not in first:
        return "caption"
    return "bvpi"


CLIP_KEYS: tuple[str, ...] = ("video", "frames")


def row_media(
    row: dict[str, Any], path: Path, line: int, image_root: str | Path, clip: ClipSettings
) -> tuple[str, Path, ClipSource | None]:
    """(reference, resolved path, clip) of a row: its `image`, or its `video` / `frames`."""
    named = [key for key in ("image", "image_path", *CLIP_KEYS) if row.get(key) is not None]
    if len(named) > 1 and set(named) & set(CLIP_KEYS):
        raise InputError(
            f"a row names one of image, video or frames; this one has {', '.join(named)}",
            path=path,
            line=line,
            field=named[-1],
        )
    if "video" in named:
        video = row["video"]
        if not isinstance(video, str) or not video:
            raise InputError(
                "'video' must be a non-empty path", path=path, line=line, field="video"
            )
        resolved = resolve_image(video, image_root)
        return video, resolved, ClipSource("video", (video,), (resolved,), clip)
    if "frames" in named:
        frames = row["frames"]
        if (
            not isinstance(frames, list)
            or not frames
            or not all(isinstance(f, str) and f for f in frames)
        ):
            raise InputError(
                "'frames' must be a non-empty list of image paths",
                path=path,
                line=line,
                field="frames",
            )
        fps = row.get("fps")
        if fps is not None and (
            isinstance(fps, bool) or not isinstance(fps, int | float) or fps <= 0
        ):
            raise InputError("'fps' must be a positive number", path=path, line=line, field="fps")
        paths = tuple(resolve_image(f, image_root) for f in frames)
        source = ClipSource("frames", tuple(frames), paths, clip, float(fps) if fps else None)
        return frames[0], paths[0], source
    image = row.get("image", row.get("image_path"))
    if not isinstance(image, str) or not image:
        raise InputError(
            "missing or non-string 'image' (or a 'video' / 'frames' clip)",
            path=path,
            line=line,
            field="image",
        )
    return image, resolve_image(image, image_root), None


def _require(record: dict[str, Any], key: str, path: Path, line: int) -> str:
    value = record.get(key)
    if not isinstance(value, str) or (key != "caption" and not value):
        raise InputError(f"missing or non-string '{key}'", path=path, line=line, field=key)
    return value


def annotation_json(response: str) -> tuple[str, str]:
    """(annotation as compact JSON, answer) for the `annotated` task.

    The annotation (fields, near/far objects with counts and positions) is parsed from the
    response; the answer is the navigation cue those fields give followed by the context caption.
    """
    parsed = parse_response(response)
    view = parsed.to_dict()
    annotation = {key: view[key] or "unknown" for key in ("sidewalk", "road", "relation")}
    annotation |= {"near": view["near"], "far": view["far"]}
    answer = f"{cue_for_parsed(parsed).text} {parsed.context or ''}".strip()
    return json.dumps(annotation, separators=(",", ":")), answer


def load_records(
    task: str,
    file: str | Path,
    image_root: str | Path,
    *,
    limit: int | None = None,
    require_answer: bool = True,
    prompt: str | None = None,
    clip: ClipSettings | None = None,
) -> list[ExampleRecord]:
    """Rows of a task file as records (answers required for training, optional for predict).

    `prompt` is used for rows without a `prompt` of their own (default: the task's prompt); a
    model trained on another prompt passes its own here. `clip` says how rows naming a `video`
    or `frames` are sampled (default: `ClipSettings()`, 8 frames).
    """
    clip = clip or ClipSettings()
    if task not in TASKS:
        raise InputError(f"unknown task '{task}'; allowed: {', '.join(TASKS)}", field="task")
    file = Path(file)
    fallback = prompt if prompt is not None else default_prompt(task)
    records: list[ExampleRecord] = []
    for line, row in read_records(file):
        if "messages" in row:  # the conversational format (`roadscene data export`)
            records.append(message_record(row, file, line, task, require_answer))
            if limit is not None and len(records) >= limit:
                break
            continue
        image, image_path, clip_source = row_media(row, file, line, image_root, clip)
        row_prompt = row.get("prompt") if isinstance(row.get("prompt"), str) else None
        if task == "caption":
            answer = row.get("caption", row.get("target"))
            if require_answer:
                answer = _require(row, "caption" if "caption" in row else "target", file, line)
        elif task == "bvpi":
            answer = row.get("response")
            if require_answer:
                answer = _require(row, "response", file, line)
        else:  # annotated: the prompt is built from the row's own answer
            response = _require(row, "response", file, line)
            annotation, answer = annotation_json(response)
            row_prompt = ANNOTATED_PROMPT.format(annotation=annotation)
        meta = {k: v for k, v in row.items() if k not in {"image", "prompt", *CLIP_KEYS}}
        records.append(
            ExampleRecord(
                image=image,
                image_path=image_path,
                prompt=row_prompt if row_prompt is not None else fallback,
                answer=answer if isinstance(answer, str) else None,
                source=file,
                line=line,
                meta=meta,
                # the annotated task's prompt is derived from the row, not a question of its own
                prompt_given=row_prompt is not None and task != "annotated",
                clip=clip_source,
            )
        )
        if limit is not None and len(records) >= limit:
            break
    return records


def _turn_text(message: Any, path: Path, line: int, field: str) -> tuple[str, int]:
    """The text of one chat turn (string content, or the text parts of a content list) and its
    number of image parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content, 0
    if not isinstance(content, list):
        raise InputError(
            "a message needs a 'content' string or list", path=path, line=line, field=field
        )
    texts, images = [], 0
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image":
            images += 1
        else:
            raise InputError(
                "content parts must be {'type': 'text', 'text': ...} or {'type': 'image'}",
                path=path,
                line=line,
                field=field,
            )
    return "".join(texts), images


def message_record(
    row: dict[str, Any], path: Path, line: int, task: str, require_answer: bool = True
) -> ExampleRecord:
    """A record from one conversational row: one user turn with one image, then (for training)
    one assistant turn."""
    messages, images = row.get("messages"), row.get("images")
    if not isinstance(messages, list) or not messages:
        raise InputError(
            "'messages' must be a non-empty list", path=path, line=line, field="messages"
        )
    if not isinstance(images, list) or len(images) != 1 or not isinstance(images[0], str):
        raise InputError(
            "'images' must list exactly one image path", path=path, line=line, field="images"
        )
    roles = [m.get("role") if isinstance(m, dict) else None for m in messages]
    if roles[0] != "user" or roles[1:] not in ([], ["assistant"]):
        raise InputError(
            f"expected a user turn and an optional assistant turn; got roles {roles}",
            path=path,
            line=line,
            field="messages",
        )
    prompt, image_parts = _turn_text(messages[0], path, line, "messages")
    if image_parts != 1:
        raise InputError(
            f"the user turn must hold one image part; it holds {image_parts}",
            path=path,
            line=line,
            field="messages",
        )
    answer = _turn_text(messages[1], path, line, "messages")[0] if len(messages) > 1 else None
    if require_answer and answer is None:
        raise InputError("no assistant turn (the answer)", path=path, line=line, field="messages")
    meta = {k: v for k, v in row.items() if k not in {"messages", "images"}}
    return ExampleRecord(
        image=images[0],
        image_path=resolve_image(images[0], path.parent),
        prompt=prompt,
        answer=answer,
        source=path,
        line=line,
        meta=meta,
        prompt_given=task != "annotated",
    )
