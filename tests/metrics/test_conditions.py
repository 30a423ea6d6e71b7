"""Safety metrics per test condition: each condition's predictions against the same truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadscene.data.synth import write_synth_dataset
from roadscene.errors import InputError
from roadscene.metrics.conditions import evaluate_conditions, parse_condition_files
from roadscene.report.conditions import write_condition_reports


def test_every_figure_is_reported_per_condition(tmp_path: Path) -> None:
    data = write_synth_dataset(tmp_path / "d", 40, seed=1, conditions=["clean", "fog"]).out_dir
    rows = [
        json.loads(line) for line in (data / "bvpi_sft_test_fog.jsonl").read_text().splitlines()
    ]
    perfect = tmp_path / "clean.jsonl"
    perfect.write_text(
        "".join(json.dumps({"image": r["image"], "text": r["response"]}) + "\n" for r in rows)
    )
    # under fog the "model" sees no sidewalk in half of the images
    fogged = tmp_path / "fog.jsonl"
    with fogged.open("w") as handle:
        for index, row in enumerate(rows):
            text = (
                row["response"]
                if index % 2
                else row["response"].replace(
                    f"Sidewalk: {row['sidewalk_pos']}.", "Sidewalk: unknown."
                )
            )
            handle.write(json.dumps({"image": row["image"], "text": text}) + "\n")
    files = parse_condition_files([f"clean={perfect}", f"fog={fogged}"])
    results = evaluate_conditions(
        files, data / "captions.csv", data / "annotations.csv", split="test"
    )
    accuracy = {
        name: r.report["strict"]["fields"]["sidewalk_pos"]["accuracy"]["rate"]
        for name, r in results.items()
    }
    assert accuracy["clean"] == 1.0
    changed = sum(1 for i, r in enumerate(rows) if i % 2 == 0 and r["sidewalk_pos"] != "unknown")
    assert accuracy["fog"] == pytest.approx(1 - changed / len(rows))
    table = write_condition_reports(results, tmp_path / "report")
    text = table.read_text()
    assert "| clean | fog |" in text.replace("metric |", "").replace("  ", " ") or (
        "clean" in text and "fog" in text
    )
    assert (tmp_path / "report" / "fog" / "report.md").is_file()
    saved = json.loads((tmp_path / "report" / "conditions.json").read_text())
    assert list(saved) == ["clean", "fog"]


@pytest.mark.parametrize(
    ("items", "message"),
    [(["clean"], "expected CONDITION=FILE"), (["a=x", "a=y"], "given twice"), ([], "at least one")],
)
def test_bad_condition_items(items: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_condition_files(items)
