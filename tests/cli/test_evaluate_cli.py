"""`roadscene evaluate ...` end to end: report files, exit codes, the published CIDEr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

PRED_FILE = "predictions/smol_bvpi_test.jsonl"
CAPTION_FILE = "predictions/smol_caption_base_test.json"
CAPTION_METRIC_KEYS = {
    "CIDEr",
    "SPICE",
    "CLIPScore",
    "BLEU-1",
    "BLEU-2",
    "BLEU-3",
    "BLEU-4",
    "METEOR",
    "ROUGE-L",
    "avg_prediction_length",
    "avg_target_length",
}


def _safety_args(sensation_dir: Path, predictions: Path) -> list[Any]:
    return [
        "evaluate",
        "safety",
        "--predictions",
        predictions,
        "--captions",
        sensation_dir / "captions.csv",
        "--annotations",
        sensation_dir / "annotations.csv",
    ]


@pytest.fixture(scope="module")
def caption_run(run_cli, sensation_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """One caption evaluation of the real 333-item file (Java: PTB tokenizer + METEOR)."""
    out = tmp_path_factory.mktemp("captions")
    result = run_cli(
        "evaluate",
        "captions",
        "--predictions",
        sensation_dir / CAPTION_FILE,
        "--out",
        out / "report.json",
        "--report-dir",
        out / "dir",
        check=True,
    )
    return result, out


@pytest.mark.slow
def test_caption_evaluation_reproduces_the_published_cider(caption_run, sensation_dir) -> None:
    result, out = caption_run
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert round(report["metrics"]["CIDEr"], 6) == 0.154457
    assert report["n"] == 333
    assert set(report["metrics"]) == CAPTION_METRIC_KEYS
    assert report["metrics"]["SPICE"] is None and "SPICE" in report["unavailable"]
    assert (
        report["metrics"]["CLIPScore"] is None
        and "--clip-model" in report["unavailable"]["CLIPScore"]
    )
    for name in ("METEOR", "ROUGE-L", "BLEU-1", "BLEU-4"):
        assert 0.0 < report["metrics"][name] < 1.0
    items = json.loads((sensation_dir / CAPTION_FILE).read_text(encoding="utf-8"))
    assert report["metrics"]["avg_prediction_length"] == pytest.approx(
        sum(len(i["prediction"].split()) for i in items) / 333
    )
    assert report["metrics"]["avg_target_length"] == pytest.approx(
        sum(len(i["target"].split()) for i in items) / 333
    )
    assert report["signature"]["metric_versions"]["pycocoevalcap"]
    assert "CIDEr" in result.stdout


@pytest.mark.slow
def test_caption_report_dir_holds_details_that_rebuild_the_corpus_cider(caption_run) -> None:
    _, out = caption_run
    folder = out / "dir"
    details = [json.loads(line) for line in (folder / "details.jsonl").read_text().splitlines()]
    assert len(details) == 333
    assert not any("Assistant:" in row["prediction"] for row in details)  # cleaned
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    mean_cider = sum(row["CIDEr"] for row in details) / len(details)
    assert mean_cider == pytest.approx(report["metrics"]["CIDEr"])
    assert (folder / "cider_per_item.png").stat().st_size > 1000
    assert "| CIDEr | 0.1545 |" in (folder / "report.md").read_text(encoding="utf-8")


def test_safety_report_dir_has_tables_plots_and_details(
    run_cli, sensation_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "safety"
    args = _safety_args(sensation_dir, sensation_dir / PRED_FILE)
    result = run_cli(*args, "--report-dir", folder, "--out", tmp_path / "r.json", check=True)
    names = {p.name for p in folder.iterdir()}
    expected = {
        "report.json",
        "report.md",
        "details.jsonl",
        "confusion_sidewalk_pos.png",
        "confusion_road_pos.png",
        "confusion_road_vs_sidewalk.png",
        "objects_near_precision_recall.png",
        "objects_far_precision_recall.png",
        "objects_compat_precision_recall.png",
    }
    assert expected <= names
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["compat"]["accuracy"]["sidewalk_pos"]["correct"] == 201
    assert len((folder / "details.jsonl").read_text().splitlines()) == 333
    markdown = (folder / "report.md").read_text(encoding="utf-8")
    assert "| sidewalk_pos | 0.604 [0.550, 0.655] | 0.589 [0.535, 0.640] (`center`)" in markdown
    assert "strict sidewalk_pos accuracy" in result.stdout


def test_bad_input_exits_2_with_one_line_and_no_output(
    run_cli, sensation_dir: Path, tmp_path: Path
) -> None:
    lines = (sensation_dir / PRED_FILE).read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([*lines[:4], lines[4][:-3], *lines[5:]]) + "\n", encoding="utf-8")
    out = tmp_path / "r.json"
    result = run_cli(*_safety_args(sensation_dir, broken), "--out", out)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {broken}:5: malformed JSON")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr and not out.exists()

    duplicated = tmp_path / "dup.jsonl"
    duplicated.write_text("\n".join([*lines, lines[0]]) + "\n", encoding="utf-8")
    result = run_cli(*_safety_args(sensation_dir, duplicated))
    assert result.returncode == 2
    assert json.loads(lines[0])["image"] in result.stderr and "--on-duplicate" in result.stderr
    assert (
        run_cli(*_safety_args(sensation_dir, duplicated), "--on-duplicate", "first").returncode == 0
    )

    result = run_cli(*_safety_args(sensation_dir, sensation_dir / PRED_FILE), "--mode", "lenient")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_compare_prints_one_table_and_writes_markdown(
    run_cli, sensation_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.json"
    truth = tmp_path / "truth.json"
    run_cli(*_safety_args(sensation_dir, sensation_dir / PRED_FILE), "--out", model, check=True)
    reference = sensation_dir / "reference" / "bvpi_sft_test.jsonl"
    run_cli(*_safety_args(sensation_dir, reference), "--out", truth, check=True)
    markdown = tmp_path / "compare.md"
    result = run_cli(
        "evaluate",
        "compare",
        model,
        truth,
        "--names",
        "smol,truth",
        "--markdown",
        markdown,
        check=True,
    )
    assert "smol" in result.stdout and "truth" in result.stdout
    table = markdown.read_text(encoding="utf-8")
    assert table.startswith("| metric | smol | truth |")
    assert "| strict sidewalk_pos accuracy | 0.6036 | **1.0000** |" in table
    assert "| missing | 0 | 0 |" in table  # counts are not scores: never marked
    bad = run_cli("evaluate", "compare", sensation_dir / "captions.csv")
    assert bad.returncode == 2 and "captions.csv" in bad.stderr
