"""`roadscene predict`: answer-only lines, resumability, bad input, the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from roadscene.errors import InputError
from roadscene.models import list_families
from roadscene.predict import ModelCard, Predictor, PredictSettings, predict_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def predictor(tiny_smolvlm_dir: Path) -> Predictor:
    return Predictor.load(ModelCard.read(tiny_smolvlm_dir))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_lines_hold_answer_target_and_parsed_fields(predictor, tiny_bvpi_dir, tmp_path) -> None:
    out = tmp_path / "p.jsonl"
    # free text (no grammar): the answer is cut out of what the model generated
    settings = PredictSettings(batch_size=4, max_new_tokens=8, limit=5, structured=False)
    summary = predict_file(tiny_bvpi_dir / "bvpi_sft_test.jsonl", out, predictor, settings,
                           progress=False)  # fmt: skip
    rows = read_jsonl(out)
    assert summary.written == 5 and len(rows) == 5
    source = read_jsonl(tiny_bvpi_dir / "bvpi_sft_test.jsonl")
    for number, row in enumerate(rows, start=1):
        # a bvpi line always carries the navigation cue, grammar or not
        assert list(row) == ["line", "image", "prompt", "prediction", "target", "parsed", "cue"]
        assert row["line"] == number and row["image"] == source[number - 1]["image"]
        assert row["target"] == source[number - 1]["response"]
        assert (
            "Assistant" not in row["prediction"] and "<end_of_utterance>" not in row["prediction"]
        )
        assert set(row["parsed"]) >= {"sidewalk", "road", "relation", "near", "far", "complete"}


def test_rerun_continues_and_torn_last_line_is_redone(predictor, tiny_bvpi_dir, tmp_path) -> None:
    data = tiny_bvpi_dir / "bvpi_sft_test.jsonl"
    full = tmp_path / "full.jsonl"
    settings = PredictSettings(batch_size=8, max_new_tokens=6)
    predict_file(data, full, predictor, settings, progress=False)

    out = tmp_path / "resumed.jsonl"
    lines = full.read_text().splitlines(keepends=True)
    # a crash after 3 complete lines, in the middle of writing the 4th
    out.write_text("".join(lines[:3]) + lines[3][:20])
    summary = predict_file(data, out, predictor, settings, progress=False)
    assert (summary.already_done, summary.written) == (3, 5)
    assert out.read_text() == full.read_text()
    again = predict_file(data, out, predictor, PredictSettings(batch_size=8), progress=False)
    assert (again.already_done, again.written) == (8, 0)


def test_output_for_other_data_is_refused(predictor, tiny_bvpi_dir, tmp_path) -> None:
    out = tmp_path / "p.jsonl"
    out.write_text(json.dumps({"line": 1, "image": "images/other.png", "prediction": ""}) + "\n")
    with pytest.raises(InputError, match="written for other data"):
        predict_file(tiny_bvpi_dir / "bvpi_sft_test.jsonl", out, predictor, progress=False)


def test_adapter_folder_resolves_base_model(tmp_path: Path) -> None:
    from roadscene.models import get_family
    from roadscene.train.config import load_config, save_config

    run = tmp_path / "run"
    run.mkdir()
    default_id = get_family("smolvlm").default_model_id
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": default_id}))
    card = ModelCard.read(run)
    assert (card.base, card.adapter, card.family) == (default_id, str(run), "smolvlm")
    assert (card.task, card.prompts) == (None, ())
    # a base whose family cannot be told (not local, not cached) needs --family
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "hub/base"}))
    with pytest.raises(InputError, match="pass --family"):
        ModelCard.read(run)
    card = ModelCard.read(run, None, "smolvlm")
    assert (card.base, card.adapter, card.family) == ("hub/base", str(run), "smolvlm")
    # a training output: the base model, family and task come from its saved config
    save_config(load_config(None, ["model.name_or_path=/models/tiny"]), run)
    card = ModelCard.read(run)
    assert (card.base, card.adapter, card.family) == ("/models/tiny", str(run), "smolvlm")
    assert card.task == "bvpi"
    # an adapter config naming no base model is a clear error
    (run / "roadscene_config.yaml").unlink()
    (run / "adapter_config.json").write_text("{}")
    with pytest.raises(InputError, match="names no base model"):
        ModelCard.read(run)


def test_cli_missing_image_exits_2_without_output(
    tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path, capsys
) -> None:
    from roadscene.cli.app import main

    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"image": "images/0.png", "prompt": "p", "response": "r"}) + "\n"
        + json.dumps({"image": "images/nope.png", "prompt": "p", "response": "r"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "p.jsonl"
    argv = ["predict", "--model", str(tiny_smolvlm_dir), "--data", str(data), "--out", str(out),
            "--image-root", str(tiny_bvpi_dir)]  # fmt: skip
    import sys

    old = sys.argv
    sys.argv = ["roadscene", *argv]
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        sys.argv = old
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "nope.png: image not found" in err and "d.jsonl:2" in err
    assert "\n" not in err
    assert not out.exists()


def test_cli_skips_and_reports_bad_images(
    tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path, capsys
) -> None:
    from typer.testing import CliRunner

    from roadscene.cli.app import app

    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"image": "images/0.png", "prompt": "p", "response": "r"}) + "\n"
        + json.dumps({"image": "images/nope.png", "prompt": "p", "response": "r"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "p.jsonl"
    result = CliRunner().invoke(app, ["predict", "--model", str(tiny_smolvlm_dir), "--data", str(data),
                                      "--out", str(out), "--image-root", str(tiny_bvpi_dir),
                                      "--on-bad-image", "skip", "--max-new-tokens", "4"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "wrote 1 predictions" in result.output and "skipped 1 rows" in result.output
    assert "line 2: " in result.output and "nope.png" in result.output
    assert [row["line"] for row in read_jsonl(out)] == [1]


def test_task_comes_from_the_trained_model_and_must_fit_the_data(tmp_path):
    from roadscene.predict.runner import resolve_task
    from roadscene.train.config import load_config, save_config

    bvpi = tmp_path / "bvpi_sft_test.jsonl"
    bvpi.write_text('{"image": "a.jpg", "prompt": "p", "response": "r"}\n')
    captions = tmp_path / "captions_test.json"
    captions.write_text('[{"image": "a.jpg", "caption": "c"}]\n')
    model = tmp_path / "model"
    model.mkdir()
    card = ModelCard.read(model, family="smolvlm")
    assert resolve_task("auto", bvpi, card) == "bvpi"  # no saved config: from the data
    save_config(load_config(None, ["data.task=annotated"]), model)
    card = ModelCard.read(model)
    assert resolve_task("auto", bvpi, card) == "annotated"
    assert resolve_task("bvpi", bvpi, card) == "bvpi"  # an explicit --task wins
    with pytest.raises(InputError, match="trained for the 'annotated' task"):
        resolve_task("auto", captions, card)


def test_structured_task_is_grammar_constrained_by_default_with_a_cue(
    predictor, tiny_bvpi_dir, tmp_path
) -> None:
    """bvpi predictions with default settings: complete answers (the grammar holds even for an
    untrained model) and a cue in every line; `--format json` adds the annotation form."""
    from roadscene.targets import cue_for_parsed, parse_response

    out = tmp_path / "p.jsonl"
    settings = PredictSettings(max_new_tokens=96, limit=3, output_format="json")
    predict_file(tiny_bvpi_dir / "bvpi_sft_test.jsonl", out, predictor, settings, progress=False)
    rows = read_jsonl(out)
    assert len(rows) == 3
    for row in rows:
        parsed = parse_response(row["prediction"])
        assert parsed.complete, row["prediction"]
        assert row["cue"] == cue_for_parsed(parsed).to_dict()
        assert row["annotation"]["image"] == row["image"]


@pytest.mark.parametrize("family", list_families())
def test_batched_prediction_equals_one_by_one_for_every_family(
    family: str, tiny_model_dir_for, tiny_bvpi_dir: Path, tmp_path: Path
) -> None:
    """Grammar-constrained answers of an untrained tiny model of each family: the output file
    is the same bytes whatever the batch size (left padding changes nothing)."""
    predictor = Predictor.load(ModelCard.read(tiny_model_dir_for(family)))
    outputs = {}
    for batch_size in (1, 3, 8):
        out = tmp_path / f"b{batch_size}.jsonl"
        settings = PredictSettings(batch_size=batch_size, max_new_tokens=24)
        predict_file(tiny_bvpi_dir / "bvpi_sft_test.jsonl", out, predictor, settings,
                     progress=False)  # fmt: skip
        outputs[batch_size] = out.read_bytes()
    assert outputs[1] == outputs[3] == outputs[8]
    assert len(read_jsonl(tmp_path / "b1.jsonl")) == 8


def test_writer_skips_written_lines_and_ends_in_data_order(tmp_path: Path) -> None:
    """Lines may arrive in any order (Ray workers); each data line is written once, and the
    finished file is in data order. An interrupted run keeps what arrived, unsorted."""
    from roadscene.predict.runner import PredictionJob, PredictionWriter, PredictSummary

    def line(number: int) -> str:
        return json.dumps({"line": number, "image": f"{number}.png", "prediction": ""}) + "\n"

    out = tmp_path / "p.jsonl"
    out.write_text(line(5))

    def job() -> PredictionJob:
        done = {5: "5.png"}
        return PredictionJob(tmp_path, out, None, None, done, [], PredictSummary(out, 0, 1))  # type: ignore[arg-type]

    with pytest.raises(KeyboardInterrupt), PredictionWriter(job()) as writer:
        assert writer.write([(3, line(3)), (5, line(5))]) == 1
        raise KeyboardInterrupt
    assert out.read_text() == line(5) + line(3)  # as it arrived
    first = job()
    with PredictionWriter(first) as writer:
        writer.write([(9, line(9)), (1, line(1))])
        writer.write([(1, line(1)), (2, line(2))])
    assert first.summary.written == 3
    assert out.read_text() == "".join(line(n) for n in (1, 2, 3, 5, 9))


def test_local_predict_never_imports_ray(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path) -> None:
    """Ray is an optional extra: `predict --help` and a local run do not import it."""
    import subprocess
    import sys

    code = """
import sys
from roadscene.cli.app import main
for argv in (["predict", "--help"], sys.argv[1:]):
    sys.argv = ["roadscene", *argv]
    try:
        main()
    except SystemExit as done:
        assert not done.code, done.code
print("IMPORTED", sorted(m for m in sys.modules if m.split(".")[0] == "ray"))
"""
    out = tmp_path / "p.jsonl"
    args = ["predict", "--model", tiny_smolvlm_dir, "--data", tiny_bvpi_dir / "bvpi_sft_test.jsonl",
            "--out", out, "--limit", "2", "--max-new-tokens", "4"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--engine" in result.stdout and len(read_jsonl(out)) == 2
    assert result.stdout.strip().splitlines()[-1] == "IMPORTED []"


def test_cli_ray_options_need_the_ray_engine(tiny_bvpi_dir, tmp_path) -> None:
    from typer.testing import CliRunner

    from roadscene.cli.app import app

    data = tiny_bvpi_dir / "bvpi_sft_test.jsonl"
    common = ["predict", "--model", str(tmp_path), "--data", str(data), "--out", str(tmp_path / "p.jsonl")]  # fmt: skip
    for extra, message in [
        (["--num-workers", "2"], "--num-workers needs --engine ray"),
        (["--engine", "ray", "--device", "cpu"], "Ray workers use --gpus-per-worker"),
        (["--engine", "spark"], "unknown engine 'spark'"),
    ]:
        result = CliRunner().invoke(app, [*common, *extra])
        assert isinstance(result.exception, InputError) and message in str(result.exception)
    assert not (tmp_path / "p.jsonl").exists()
