"""`roadscene describe IMAGE|CLIP|FOLDER... --model ...`: the structured answer, its navigation cue
and the caption for each image, or for each window of a clip (a video or a folder of frames), with
latency; optionally spoken (espeak-ng) or saved as a WAV file. A clip's cue is said only when it
changes (a new action, a higher urgency, something starting to approach)."""

from __future__ import annotations

from pathlib import Path

import typer


def describe(
    images: list[Path] = typer.Argument(
        ...,
        help="Images, videos (.mp4, .webm, ...) or folders of frame images to describe; a clip "
        "gets one answer per window.",
    ),
    model: str = typer.Option(
        ..., "--model", help="Hub id, saved model folder, or a training output (adapter) folder."
    ),
    adapter: Path | None = typer.Option(None, "--adapter", help="PEFT adapter folder."),
    family: str | None = typer.Option(
        None, "--family", help="Model family (default: from the saved config / model type)."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image on stdout."),
    speak: bool = typer.Option(False, "--speak", help="Say each cue with espeak-ng."),
    voice: str | None = typer.Option(None, "--voice", help="espeak-ng voice, e.g. en-us."),
    wav: Path | None = typer.Option(None, "--wav", help="Write the spoken cues to this WAV file."),
    num_beams: int = typer.Option(1, "--num-beams", min=1, help="1 = greedy, K = beam search."),
    max_new_tokens: int = typer.Option(
        192,
        "--max-new-tokens",
        min=1,
        help="Answer length cap (published answers run to ~730 characters).",
    ),
    relation_from_fields: bool = typer.Option(
        False, "--relation-from-fields", help="Allow only the relation the fields' rule derives."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda, cuda:1 (default: auto)."),
    window_seconds: float = typer.Option(
        2.0,
        "--window-seconds",
        min=0.05,
        help="Clips: one answer per window of this many seconds (match the training clips').",
    ),
    fps: float = typer.Option(
        1.0, "--fps", min=0.01, help="Folders of frames: frames per second (default 1)."
    ),
    clip_frames: int | None = typer.Option(
        None,
        "--clip-frames",
        min=1,
        max=64,
        help="Clips: frames per window (default: as the model was trained, else 8).",
    ),
) -> None:
    """Describe street images or clips for a blind pedestrian: cue, fields, nearby objects,
    caption."""
    from roadscene.data.clips import read_timeline
    from roadscene.data.images import open_image
    from roadscene.data.windows import VIDEO_SUFFIXES, folder_frames
    from roadscene.errors import InputError
    from roadscene.io import check_output, dumps_line
    from roadscene.predict import ModelCard
    from roadscene.predict.describe import describe_images
    from roadscene.predict.speech import check_voice, espeak_path, is_wav_file, synthesize_wav
    from roadscene.predict.speech import speak as say

    # Options first: a wrong option is reported whatever is installed.
    if voice is not None and not (speak or wav):
        raise InputError("--voice needs --speak or --wav", field="voice")
    if wav is not None and wav.suffix.lower() != ".wav":
        raise InputError("the --wav file must end in .wav", path=wav)
    if (speak or wav) and espeak_path() is None:
        from roadscene.predict.speech import ESPEAK, INSTALL_HINT

        raise InputError(f"--speak/--wav need {ESPEAK}, which is not installed; {INSTALL_HINT}")
    if voice is not None:
        check_voice(voice)
    if wav is not None:
        check_output(wav, ours=is_wav_file, what="a WAV file")

    # Then the inputs: a missing or unreadable one is reported before the model is looked up.
    for image in images:
        if image.is_dir():
            folder_frames(image)
        elif image.suffix.lower() in VIDEO_SUFFIXES:
            read_timeline(image)
        else:
            open_image(image)
    cues: list[str] = []
    for description in describe_images(
        images,
        ModelCard.read(model, adapter, family),
        num_beams=num_beams,
        max_new_tokens=max_new_tokens,
        relation_from_fields=relation_from_fields,
        device=device,
        window_s=window_seconds,
        fps=fps,
        clip_frames=clip_frames,
        notes=lambda note: typer.echo(f"note: {note}", err=True),
    ):
        if as_json:
            typer.echo(dumps_line(description.to_dict()))
        else:
            typer.echo(description.to_text())
        if not description.spoken:
            continue  # a clip's cue repeated from the window before
        cues.append(description.cue.text)
        if speak:
            say(description.cue.text, voice=voice)
    if wav is not None:
        synthesize_wav(" ".join(cues), wav, voice=voice)
        if not as_json:
            typer.echo(f"wrote spoken cues to {wav}")
