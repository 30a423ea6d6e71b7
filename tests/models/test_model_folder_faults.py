"""A model folder that cannot be loaded is one clear line in `predict`, `describe` and `train`
(exit 2, no traceback, nothing written), and nothing ever advises `weights_only=False`."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch


def _truncate(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _garbage(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(b"\x93garbage" * 1000)


def _huge_header(folder: Path) -> None:
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")


def _bad_config(folder: Path) -> None:
    (folder / "config.json").write_text('{"model_type": "smolvlm", ')


def _empty_config(folder: Path) -> None:
    (folder / "config.json").write_text("")


def _no_tokenizer(folder: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()


def _shape_mismatch(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["text_config"]["hidden_size"] *= 2
    (folder / "config.json").write_text(json.dumps(config))


def _pickle_only(folder: Path) -> None:
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


DAMAGE = {
    "truncated safetensors": (_truncate, "cannot load this model folder"),
    "garbage safetensors": (_garbage, "cannot load this model folder"),
    "huge safetensors header": (_huge_header, "cannot load this model folder"),
    "bad config.json": (_bad_config, "config.json: malformed JSON"),
    "empty config.json": (_empty_config, "config.json: file is empty"),
    "no tokenizer": (_no_tokenizer, "cannot load this model folder"),
    "shape mismatch": (_shape_mismatch, "weights do not fit config.json"),
    "pickle-only weights": (_pickle_only, "only pickle weights (*.bin) here"),
}


@pytest.fixture(scope="module")
def damaged(tiny_smolvlm_dir: Path, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("damaged")
    folders = {}
    for name, (damage, _) in DAMAGE.items():
        folder = root / name.replace(" ", "_")
        shutil.copytree(tiny_smolvlm_dir, folder)
        damage(folder)
        folders[name] = folder
    return folders


def _commands(model: Path, data: Path, tmp: Path, *extra: str) -> dict[str, list]:
    recipe = tmp / "recipe.yaml"
    recipe.write_text(
        f"model: {{family: smolvlm, name_or_path: '{model}'}}\n"
        f"data: {{data_dir: '{data}'}}\n"
        f"train: {{output_dir: '{tmp / 'run'}', max_steps: 1}}\n"
        "generation_eval: {enabled: false}\n"
    )
    return {
        "predict": ["predict", "--model", model, "--data", data / "bvpi_sft_test.jsonl",
                    "--out", tmp / "p.jsonl", *extra],
        "describe": ["describe", data / "images" / "0.png", "--model", model, *extra],
        "train": ["train", recipe],
    }  # fmt: skip


def _assert_one_line(code: int, err: str, expected: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], err
    assert "weights_only=False" not in err and "Traceback" not in err


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_model_folder_is_one_line_everywhere(
    damage, damaged, tiny_bvpi_dir, tmp_path, cli_in_process
) -> None:
    folder = damaged[damage]
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for command, args in _commands(folder, tiny_bvpi_dir, tmp_path).items():
        code, _, err = cli_in_process(*args)
        _assert_one_line(code, err, DAMAGE[damage][1])
        assert str(folder) in err, command
        assert not (tmp_path / "p.jsonl").exists() and not (tmp_path / "run").exists(), command
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_folder_of_another_family_and_an_unknown_device(
    tiny_smolvlm_dir, tiny_flamingo_dir, tiny_bvpi_dir, tmp_path, cli_in_process
) -> None:
    commands = _commands(tiny_flamingo_dir, tiny_bvpi_dir, tmp_path, "--family", "smolvlm")
    for command in ("predict", "describe"):
        code, _, err = cli_in_process(*commands[command])
        _assert_one_line(code, err, "holds a 'flamingo' model, not a smolvlm model")
    commands = _commands(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path)
    for device, message in (("tpu", "unknown device 'tpu'"), ("cuda:7", "is not available"),
                            ("meta", "unsupported device")):  # fmt: skip
        for command in ("predict", "describe"):
            code, _, err = cli_in_process(*commands[command], "--device", device)
            _assert_one_line(code, err, message)
    assert not (tmp_path / "p.jsonl").exists()


def test_convert_never_relays_unpickling_advice(tmp_path, cli_in_process) -> None:
    from pathlib import PurePosixPath

    checkpoint = tmp_path / "checkpoint.pt"
    # a pickled object that is not a tensor: torch refuses it under weights_only and advises
    # re-running with weights_only=False, which would run whatever the pickle holds
    torch.save({"model": PurePosixPath("x")}, checkpoint)
    code, _, err = cli_in_process("model", "convert-openflamingo", "--checkpoint", checkpoint,
                                  "--lm", tmp_path, "--vision", tmp_path,
                                  "--out", tmp_path / "out")  # fmt: skip
    _assert_one_line(code, err, "cannot read checkpoint")
    assert "pickled Python objects" in err and "weights_only" not in err
    assert not (tmp_path / "out").exists()
