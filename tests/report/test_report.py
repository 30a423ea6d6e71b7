"""Report folders from in-memory evaluations (what the demo does): files, tables, plots."""

from __future__ import annotations

import json
from pathlib import Path

from roadscene.metrics.safety import evaluate_safety
from roadscene.report import write_report_dir
from roadscene.report.compare import comparison_markdown
from roadscene.schema import SceneAnnotation


def _result():
    truth = {
        "a.jpg": SceneAnnotation.build("a.jpg", "left", "right", near={"car": ["center"]}),
        "b.jpg": SceneAnnotation.build("b.jpg", "center", "unknown"),
        "c.jpg": SceneAnnotation.build("c.jpg", "right", "front", far={"person": ["left"]}),
    }
    predictions = [
        (
            "a.jpg",
            "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. "
            "Nearby: a car close on the center.",
        ),
        (
            "b.jpg",
            "Sidewalk: left. Road: unknown. RoadVsSidewalk: unknown. "
            "Nearby: no important close objects visible.",
        ),
    ]  # c.jpg has no prediction
    return evaluate_safety(predictions, truth)


def test_report_dir_from_in_memory_records(tmp_path: Path) -> None:
    result = _result()
    assert result.report["missing"] == 1
    folder = write_report_dir(result, tmp_path / "report")
    assert {p.name for p in folder.iterdir()} >= {
        "report.json", "details.jsonl", "report.md", "confusion_sidewalk_pos.png",
        "objects_near_precision_recall.png",
    }  # fmt: skip
    assert json.loads((folder / "report.json").read_text())["n"] == 3
    details = [json.loads(x) for x in (folder / "details.jsonl").read_text().splitlines()]
    assert [row["missing"] for row in details] == [False, False, True]
    markdown = (folder / "report.md").read_text()
    assert "missing predictions: 1" in markdown
    assert "| car | 1 | 1 | 0 | 0 |" in markdown  # support, tp, fp, fn
    assert "![confusion_road_pos.png](confusion_road_pos.png)" in markdown


def test_report_dir_is_replaced_whole_and_compare_reads_reports(tmp_path: Path) -> None:
    result = _result()
    folder = tmp_path / "report"
    write_report_dir(result, folder)
    write_report_dir(result.report, folder)  # a report dict alone also works (no details)
    assert (folder / "details.jsonl").read_text() == ""
    table = comparison_markdown([result.report, result.report], ["one", "two"])
    assert "| strict sidewalk_pos accuracy | 0.3333 | 0.3333 |" in table  # a tie marks nothing
