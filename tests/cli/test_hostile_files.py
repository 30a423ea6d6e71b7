"""Fault harness: every command that takes a path, fed crafted files and hostile places.

For every case: exit code 2 (these inputs are all unusable), never a traceback, exactly one line
on stderr (`data validate` lists one line per problem, each naming the file), no output left
behind (not even a temporary), and no input file changed. Commands run in this process, so the
whole table takes seconds; docs/reliability.md lists what each command promises.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

HEADER = (
    "image,status,sidewalk_pos,road_pos,Object_present,Object_present_outside,m_bicycle,m_car,"
    "m_person,m_traffic_sign,traffic_light,m_obstacle,m_grass,m_plants,m_trees,m_bicycle_outside,"
    "m_car_outside,m_person_outside,m_traffic_sign_outside,traffic_light_outside,"
    "m_obstacle_outside,m_grass_outside,m_plants_outside,m_trees_outside"
)
ANSWER = "Sidewalk: center. Road: left. RoadVsSidewalk: left_of. Nearby: no important close objects visible."  # fmt: skip


def hostile_files(root: Path, suffix: str, png_header_only) -> dict[str, Path]:
    """Files no command can use, each a class of the catalogue, named `<class><suffix>`."""
    from PIL import Image

    root.mkdir(parents=True)
    files = {name: root / f"{name}{suffix}" for name in (
        "missing", "empty", "folder", "fifo", "link_loop", "broken_link", "binary", "nul_bytes",
        "deep_json", "long_integer", "field_over_128kb", "one_line_text", "png_bomb",
        "truncated_png", "whitespace")}  # fmt: skip
    files["empty"].write_bytes(b"")
    files["folder"].mkdir()
    os.mkfifo(files["fifo"])
    files["link_loop"].symlink_to(files["link_loop"])
    files["broken_link"].symlink_to(root / "nowhere")
    files["binary"].write_bytes(bytes(range(256)) * 8)
    files["nul_bytes"].write_bytes(b'{"image": "a\x00.jpg", "text": "\x00"}\n\x00\x00')
    files["deep_json"].write_text("[" * 100_000 + "]" * 100_000)
    files["long_integer"].write_text('{"image": "a.jpg", "text": "x", "n": ' + "9" * 5000 + "}\n")
    files["field_over_128kb"].write_text(
        'image_path,target,split\na.jpg,"' + "x" * 200_000 + '",train\n'
    )
    files["one_line_text"].write_text("my notes, one line\n")
    png_header_only(files["png_bomb"], 20_000, 20_000)
    whole = root / "whole.png"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(whole)
    files["truncated_png"].write_bytes(whole.read_bytes()[:80])
    whole.unlink()
    files["whitespace"].write_text(" \n\t\n")
    return files


def hostile_places(root: Path) -> dict[str, Path]:
    """Output paths that cannot, or must not, be written."""
    root.mkdir(parents=True)
    notes = root / "notes.txt"
    notes.write_text("my notes, one line\n")
    folder = root / "my-folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("keep\n")
    os.mkfifo(root / "fifo")
    return {
        "existing_text_file": notes,
        "folder_of_other_files": folder,
        "under_proc": Path("/proc/roadscene-hostile/out"),
        "parent_is_a_file": notes / "out",
        "fifo": root / "fifo",
    }


def snapshot(root: Path) -> dict[str, str]:
    """Content hash of every regular file under `root` (and every folder's listing)."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or path.is_fifo():
            state[str(path)] = "special"
        elif path.is_dir():
            state[str(path)] = "dir:" + ",".join(sorted(p.name for p in path.iterdir()))
        elif path.is_file():
            state[str(path)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return state


@pytest.fixture(scope="module")
def world(
    tmp_path_factory, tiny_smolvlm_dir: Path, tiny_bvpi_dir: Path, png_header_only
) -> dict[str, Path]:
    """Valid inputs for every command, hostile files and hostile places."""
    from roadscene.metrics.safety import evaluate_safety

    root = tmp_path_factory.mktemp("world")
    ok = root / "valid"
    ok.mkdir()
    (ok / "captions.csv").write_text(
        "image_path,target,split\ntraining/images/a.jpg,A wide sidewalk.,train\n"
        "testing/images/c.jpg,Crossing ahead.,test\n",
        encoding="utf-8",
    )
    row = ",".join(["c.jpg", "done", "Center", "Left", "No", "No", *["not present"] * 18])
    (ok / "annotations.csv").write_text(f"{HEADER}\n{row}\n", encoding="utf-8")
    (ok / "predictions.jsonl").write_text(
        json.dumps({"image": "testing/images/c.jpg", "prediction": ANSWER}) + "\n"
    )
    (ok / "caption_predictions.jsonl").write_text(
        json.dumps({"image": "c.jpg", "text": "A crossing.", "target": "Crossing ahead."}) + "\n"
    )
    result = evaluate_safety(ok / "predictions.jsonl", captions_csv=ok / "captions.csv",
                             annotations_csv=ok / "annotations.csv", split="test")  # fmt: skip
    (ok / "report.json").write_text(json.dumps(result.report))
    (ok / "recipe.yaml").write_text(
        f"model: {{family: smolvlm, name_or_path: '{tiny_smolvlm_dir}'}}\n"
        f"data: {{data_dir: '{tiny_bvpi_dir}'}}\n"
        f"train: {{output_dir: '{root / 'never-trained'}', max_steps: 1}}\n"
        "generation_eval: {enabled: false}\n"
    )
    return {
        "root": root,
        "ok": ok,
        "model": tiny_smolvlm_dir,
        "data": tiny_bvpi_dir,
        **{
            f"json:{k}": v
            for k, v in hostile_files(root / "h_json", ".json", png_header_only).items()
        },
        **{
            f"csv:{k}": v for k, v in hostile_files(root / "h_csv", ".csv", png_header_only).items()
        },
        **{
            f"yaml:{k}": v
            for k, v in hostile_files(root / "h_yaml", ".yaml", png_header_only).items()
        },
        **{
            f"png:{k}": v for k, v in hostile_files(root / "h_png", ".png", png_header_only).items()
        },
        **{f"place:{k}": v for k, v in hostile_places(root / "places").items()},
    }


HOSTILE = ["missing", "empty", "folder", "fifo", "link_loop", "broken_link", "binary", "nul_bytes",
           "deep_json", "long_integer", "field_over_128kb", "one_line_text", "png_bomb",
           "truncated_png", "whitespace"]  # fmt: skip
PLACES = ["existing_text_file", "folder_of_other_files", "under_proc", "parent_is_a_file", "fifo"]


def _commands(w: dict[str, Path], out: Path) -> dict[str, tuple[str, list]]:
    """command name -> (suffix of its hostile files, argument list with {slot} markers)."""
    ok = w["ok"]
    return {
        "data validate csv": (".csv", ["data", "validate", "{in}"]),
        "data validate json": (".json", ["data", "validate", "{in}"]),
        "data build --captions": (".csv", ["data", "build", "--captions", "{in}", "--annotations",
                                           ok / "annotations.csv", "--out", out / "build"]),
        "data build --annotations": (".csv", ["data", "build", "--captions", ok / "captions.csv",
                                              "--annotations", "{in}", "--out", out / "build"]),
        "data synth --like": (".csv", ["data", "synth", "--like", "{in}", "--n", "2", "--size",
                                       "32", "--out", out / "synth"]),
        "evaluate safety --predictions": (".json", [
            "evaluate", "safety", "--predictions", "{in}", "--captions", ok / "captions.csv",
            "--annotations", ok / "annotations.csv", "--out", out / "r.json"]),
        "evaluate safety --captions": (".csv", [
            "evaluate", "safety", "--predictions", ok / "predictions.jsonl", "--captions", "{in}",
            "--annotations", ok / "annotations.csv", "--report-dir", out / "rd"]),
        "evaluate safety --annotations": (".csv", [
            "evaluate", "safety", "--predictions", ok / "predictions.jsonl", "--captions",
            ok / "captions.csv", "--annotations", "{in}", "--out", out / "r.json"]),
        "evaluate captions --predictions": (".json", [
            "evaluate", "captions", "--predictions", "{in}", "--out", out / "r.json"]),
        "evaluate captions --references json": (".json", [
            "evaluate", "captions", "--predictions", ok / "caption_predictions.jsonl",
            "--references", "{in}", "--out", out / "r.json"]),
        "evaluate captions --references csv": (".csv", [
            "evaluate", "captions", "--predictions", ok / "caption_predictions.jsonl",
            "--references", "{in}", "--split", "test", "--out", out / "r.json"]),
        "evaluate compare": (".json", ["evaluate", "compare", ok / "report.json", "{in}",
                                       "--markdown", out / "t.md"]),
        "predict --data": (".json", ["predict", "--model", w["model"], "--data", "{in}", "--out",
                                     out / "p.jsonl"]),
        "predict --image-root": (".json", [
            "predict", "--model", w["model"], "--data", w["data"] / "bvpi_sft_test.jsonl",
            "--image-root", "{in}", "--out", out / "p.jsonl"]),
        "data pairs --data": (".json", ["data", "pairs", "--model", w["model"], "--data", "{in}",
                                        "--out", out / "pairs.jsonl"]),
        "data pairs --image-root": (".json", [
            "data", "pairs", "--model", w["model"], "--data", w["data"] / "bvpi_sft_test.jsonl",
            "--image-root", "{in}", "--out", out / "pairs.jsonl"]),
        "describe IMAGE": (".png", ["describe", "{in}", "--model", w["model"]]),
        "train CONFIG": (".yaml", ["train", "{in}"]),
        "model tiny --corpus": (".json", ["model", "tiny", "--corpus", "{in}", "--out",
                                          out / "tiny"]),
        "model convert-openflamingo --checkpoint": (".json", [
            "model", "convert-openflamingo", "--checkpoint", "{in}", "--lm", w["root"],
            "--vision", w["root"], "--out", out / "converted"]),
    }  # fmt: skip


def _outputs(w: dict[str, Path]) -> dict[str, tuple[bool, list]]:
    """command name -> (whether the output is a folder, argument list with {out})."""
    ok = w["ok"]
    safety = ["evaluate", "safety", "--predictions", ok / "predictions.jsonl", "--captions",
              ok / "captions.csv", "--annotations", ok / "annotations.csv"]  # fmt: skip
    return {
        "data build --out": (True, ["data", "build", "--captions", ok / "captions.csv",
                                    "--annotations", ok / "annotations.csv", "--out", "{out}"]),
        "data synth --out": (True, ["data", "synth", "--n", "2", "--size", "32", "--out",
                                    "{out}"]),
        "evaluate safety --out": (False, [*safety, "--out", "{out}"]),
        "evaluate safety --report-dir": (True, [*safety, "--report-dir", "{out}"]),
        "evaluate captions --out": (False, ["evaluate", "captions", "--predictions",
                                            ok / "caption_predictions.jsonl", "--out", "{out}"]),
        "evaluate compare --markdown": (False, ["evaluate", "compare", ok / "report.json",
                                                "--markdown", "{out}"]),
        "predict --out": (False, ["predict", "--model", w["model"], "--data",
                                  w["data"] / "bvpi_sft_test.jsonl", "--out", "{out}"]),
        "data pairs --out": (False, ["data", "pairs", "--model", w["model"], "--data",
                                     w["data"] / "bvpi_sft_test.jsonl", "--out", "{out}"]),
        "train output_dir": (True, ["train", ok / "recipe.yaml", "--set",
                                    "train.output_dir={out}"]),
        "model tiny --out": (True, ["model", "tiny", "--out", "{out}"]),
        "model convert-openflamingo --out": (True, [
            "model", "convert-openflamingo", "--checkpoint", ok / "none.pt", "--lm", ok,
            "--vision", ok, "--out", "{out}"]),
        "demo --out": (True, ["demo", "--out", "{out}", "--steps", "1"]),
        "bench gpu --out": (False, ["bench", "gpu", "--out", "{out}"]),
    }  # fmt: skip


def _check_one_line(command: str, code: int, err: str, path: Path) -> None:
    assert code == 2, f"exit {code}\n{err}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    if command.startswith("data validate"):
        assert lines and all(str(path) in line for line in lines), err
    else:
        assert len(lines) == 1 and lines[0].startswith("error: "), err


def test_crafted_input_files(world, cli_in_process, tmp_path: Path) -> None:
    """Every path argument of every command, given each class of unusable file."""
    before = snapshot(world["root"])
    failures = []
    for command, (suffix, template) in _commands(world, tmp_path / "out").items():
        for name in HOSTILE:
            path = world[f"{suffix.lstrip('.')}:{name}"]
            args = [path if part == "{in}" else part for part in template]
            try:
                code, _, err = cli_in_process(*args)
                _check_one_line(command, code, err, path)
                leftovers = list((tmp_path / "out").rglob("*"))
                assert not leftovers, f"partial output: {leftovers}"
            except BaseException as failure:  # noqa: BLE001 - collect every case
                failures.append(f"{command} <- {name}: {type(failure).__name__}: {failure}")
    assert snapshot(world["root"]) == before, "an input file changed"
    assert not failures, f"{len(failures)} failing cases:\n" + "\n".join(failures)


def test_hostile_output_places(world, cli_in_process) -> None:
    """Every output argument, pointed at places that cannot or must not be written."""
    before = snapshot(world["root"])
    failures = []
    for command, (_, template) in _outputs(world).items():
        for name in PLACES:
            place = world[f"place:{name}"]
            args = [str(part).replace("{out}", str(place)) for part in template]
            try:
                code, _, err = cli_in_process(*args)
                _check_one_line(command, code, err, place)
            except BaseException as failure:  # noqa: BLE001 - collect every case
                failures.append(f"{command} -> {name}: {type(failure).__name__}: {failure}")
    assert snapshot(world["root"]) == before, "an input or a hostile place changed"
    assert not failures, f"{len(failures)} failing cases:\n" + "\n".join(failures)


def test_ctrl_c_is_one_line_and_exit_130(world, cli_in_process, monkeypatch, tmp_path) -> None:
    import roadscene.data.build

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(roadscene.data.build, "build_datasets", interrupted)
    ok = world["ok"]
    code, _, err = cli_in_process("data", "build", "--captions", ok / "captions.csv",
                                  "--annotations", ok / "annotations.csv", "--out",
                                  tmp_path / "out")  # fmt: skip
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130 and len(lines) == 1 and lines[0].startswith("interrupted"), err
    assert not (tmp_path / "out").exists()
