"""Fixtures shared by the whole suite. Nothing here reaches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests build tiny models locally; nothing may come from the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

from roadscene.paths import sensation_dir as _sensation_dir  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def sensation_dir() -> Path:
    """The real SENSATION data (read-only, beside the checkout or $ROADSCENE_SENSATION_DIR)."""
    path = _sensation_dir()
    if not (path / "captions.csv").is_file():
        pytest.fail(
            f"SENSATION data not found at {path}: set ROADSCENE_SENSATION_DIR to the folder "
            "holding captions.csv and annotations.csv"
        )
    return path


@pytest.fixture(scope="session")
def tiny_smolvlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init SmolVLM checkpoint (96 px, one tile, 16 image tokens, 2+2 layers of
    width 64, locally trained BPE tokenizer), built once per session. Treat as read-only."""
    from roadscene.models import get_family

    out = tmp_path_factory.mktemp("tiny_smolvlm") / "model"
    return get_family("smolvlm").build_tiny(out, seed=0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run tiny-model tests on one intra-op thread: on a busy 2-core box, two OpenMP threads
    spin against each other and small matmuls get far slower (docs/performance.md)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_flamingo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init Flamingo (32 px CLIP of width 32, 8 perceiver latents, MosaicGPT 2 × 64,
    locally trained BPE tokenizer with the three Flamingo tokens), built once. Read-only."""
    from roadscene.models import get_family

    out = tmp_path_factory.mktemp("tiny_flamingo") / "model"
    return get_family("flamingo").build_tiny(out, seed=0, sizes={"gate_init": 0.3})


@pytest.fixture(scope="session")
def tiny_model_dir_for(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """`tiny_model_dir_for(family)`: that family's tiny random-init checkpoint (the shared
    `tiny_<family>_dir` fixture where there is one, else built once with its default sizes).
    Treat as read-only."""
    from roadscene.models import get_family

    built: dict[str, Path] = {}

    def tiny_dir(family: str) -> Path:
        if family not in built:
            try:
                built[family] = request.getfixturevalue(f"tiny_{family}_dir")
            except pytest.FixtureLookupError:
                out = tmp_path_factory.mktemp(f"tiny_{family}") / "model"
                built[family] = get_family(family).build_tiny(out, seed=0)
        return built[family]

    return tiny_dir


@pytest.fixture(scope="session")
def run_cli():
    """Run `roadscene ARGS...` in a subprocess (as a user would); returns CompletedProcess."""
    import subprocess
    import sys

    def run(*args: str, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "roadscene", *map(str, args)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"roadscene {' '.join(map(str, args))} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    return run


@pytest.fixture(scope="session")
def tiny_bvpi_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny `data build`-style folder: 8 solid-colour 64x48 images and bvpi_sft_{train,val,test}
    .jsonl (the same 8 rows in each split), each image with its own structured answer."""
    import json

    from PIL import Image

    root = tmp_path_factory.mktemp("tiny_bvpi")
    (root / "images").mkdir()
    colours = [(230, 20, 20), (20, 200, 20), (20, 20, 230), (230, 230, 20), (230, 20, 230),
               (20, 230, 230), (128, 128, 128), (250, 140, 0)]  # fmt: skip
    headers = [("left", "right", "right_of"), ("center", "front", "crossing_front"),
               ("right", "left", "left_of"), ("left", "front", "crossing_front"),
               ("center", "left", "left_of"), ("right", "front", "crossing_front"),
               ("left", "right", "right_of"), ("center", "right", "right_of")]  # fmt: skip
    nearby = ["no important close objects visible.", "a person close on the left.",
              "2 cars close on the left and right.", "no important close objects visible.",
              "an obstacle close on the center.", "no important close objects visible.",
              "a bicycle close on the right; a traffic sign close on the left.",
              "no important close objects visible."]  # fmt: skip
    rows = []
    for index, (colour, (sidewalk, road, relation), near) in enumerate(
        zip(colours, headers, nearby, strict=True)
    ):
        Image.new("RGB", (64, 48), colour).save(root / "images" / f"{index}.png")
        response = f"Sidewalk: {sidewalk}. Road: {road}. RoadVsSidewalk: {relation}. Nearby: {near}"
        rows.append(
            {
                "image": f"images/{index}.png",
                "prompt": "Describe the scene.",
                "response": response,
                "sidewalk_pos": sidewalk,
                "road_pos": road,
                "road_vs_sidewalk": relation,
            }  # fmt: skip
        )
    for split in ("train", "val", "test"):
        with open(root / f"bvpi_sft_{split}.jsonl", "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in rows)
    return root


@pytest.fixture(scope="session")
def annotation_form_reference_schema() -> dict:
    """The annotation form's JSON Schema written out independently of `roadscene.schema` (the
    form of docs/data.md): our pydantic form must agree with it, and answers must validate
    against it."""
    position = {"type": "string", "enum": ["not present", "Left", "Center", "Right"]}
    yes_no = {"type": "string", "enum": ["No", "Yes"]}
    classes = ("bicycle", "car", "person", "traffic_sign", "traffic_light", "obstacle")
    vegetation = ("grass", "plants", "trees")

    def objects(obstacle_list: bool) -> dict:
        properties = {name: dict(position) for name in (*classes, *vegetation)}
        if obstacle_list:
            properties["obstacle"] = {"type": "array", "items": dict(position)}
        return {"type": "object", "properties": properties}

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Sidewalk scene annotation",
        "type": "object",
        "properties": {
            "image": {"type": "string"},
            "sidewalk_pos": {"type": "string", "enum": ["Left", "Center", "Right", "Outside"]},
            "road_pos": {"type": "string", "enum": ["Not present", "Left", "Front", "Right"]},
            "object_present": yes_no,
            "objects_on_sidewalk": objects(obstacle_list=True),
            "object_present_outside": yes_no,
            "objects_outside_sidewalk": objects(obstacle_list=False),
        },
        "required": [
            "image",
            "sidewalk_pos",
            "road_pos",
            "object_present",
            "object_present_outside",
        ],
    }


@pytest.fixture(scope="session")
def png_bomb() -> bytes:
    """A valid 20000 x 20000 PNG (one bit per pixel, all black) of about 200 kB: 1.2 GB once
    decoded as RGB. Written chunk by chunk, since PIL itself would refuse to encode it quickly."""
    import struct
    import zlib

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    side = 20_000
    row = b"\0" * (1 + side // 8)  # filter byte + packed bits
    pixels = zlib.compress(row * side, 1)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture()
def cli_in_process(capfd):
    """Run `roadscene ARGS...` in this process (fast: libraries stay imported) and return
    (exit code, stdout, stderr). An exception escaping the command is re-raised with its
    traceback, so a test fails on any traceback a user would see."""
    import sys

    from roadscene.cli.app import main

    def run(*args: object) -> tuple[int, str, str]:
        capfd.readouterr()
        old = sys.argv
        sys.argv = ["roadscene", *map(str, args)]
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        finally:
            sys.argv = old
        out, err = capfd.readouterr()
        return code, out, err

    return run


def _png_header_only(path: Path, width: int, height: int) -> Path:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    data = zlib.compress(b"\x00" * 1024)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )
    return path


@pytest.fixture(scope="session")
def png_header_only():
    """`png_header_only(path, width, height)`: a PNG whose header claims that size (a
    decompression bomb's signature) over a few bytes of data; opening it must be refused before
    any decoding."""
    return _png_header_only


@pytest.fixture(scope="session")
def tiny_clips_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny `data synth --clips` folder: 6 synthetic 64 px WebM clips of 8 frames at 4 fps
    (2 s; close people, bicycles and cars moving), with bvpi_sft_{train,val,test}.jsonl rows
    naming a `video`, annotations.csv with its `motion` column."""
    from roadscene.data.synth import (
        ClipOptions,
        RenderOptions,
        SceneDistribution,
        write_synth_dataset,
    )
    from roadscene.schema import MOVING_CLASSES

    out = tmp_path_factory.mktemp("tiny_clips") / "synth"
    distribution = SceneDistribution.builtin().with_object_rate(0.9, MOVING_CLASSES)
    write_synth_dataset(
        out,
        6,
        seed=3,
        distribution=distribution,
        options=RenderOptions(size=64),
        val_fraction=0.0,
        test_fraction=0.5,
        context=False,
        clips=ClipOptions(frames=8, fps=4),
    )
    return out


@pytest.fixture(scope="session")
def token_weighted_loss_check():
    """A check that a right-padded batch's loss is its examples' token-weighted loss (padding
    carries no loss): `check(family, loaded, features)` for encoded examples with labels."""

    def check(family, loaded, features) -> None:
        import torch

        from roadscene.models.base import IGNORE_INDEX

        with torch.no_grad():
            batch = family.collate(loaded.processor, features, padding_side="right")
            batch_loss = float(loaded.model(**batch).loss)
            losses, counts = [], []
            for f in features:
                single = family.collate(loaded.processor, [f], padding_side="right")
                losses.append(float(loaded.model(**single).loss))
                counts.append(int((f["labels"][1:] != IGNORE_INDEX).sum()))
        weighted = sum(loss * n for loss, n in zip(losses, counts, strict=True)) / sum(counts)
        assert batch_loss == pytest.approx(weighted, rel=1e-5)

    return check
