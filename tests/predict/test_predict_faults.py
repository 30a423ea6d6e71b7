"""`predict` never modifies a file it did not write, never joins two answers on one line, resumes
across line separators inside answers, and leaves no output when it stops early."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadscene.errors import InputError
from roadscene.predict import ModelCard, Predictor, PredictSettings, predict_file
from roadscene.predict.runner import read_done

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def predictor(tiny_smolvlm_dir: Path) -> Predictor:
    return Predictor.load(ModelCard.read(tiny_smolvlm_dir))


@pytest.fixture(scope="module")
def full_run(predictor, tiny_bvpi_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full") / "p.jsonl"
    predict_file(tiny_bvpi_dir / "bvpi_sft_test.jsonl", out, predictor,
                 PredictSettings(batch_size=8, max_new_tokens=6), progress=False)  # fmt: skip
    return out


def test_a_text_file_as_out_is_never_touched(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path,
                                             cli_in_process) -> None:  # fmt: skip
    for content in ("my notes\n", "one line without newline", '{"line": 1}\n'):
        notes = tmp_path / "notes.txt"
        notes.write_text(content)
        code, _, err = cli_in_process("predict", "--model", tiny_smolvlm_dir, "--data",
                                      tiny_bvpi_dir / "bvpi_sft_test.jsonl", "--out", notes)  # fmt: skip
        assert code == 2 and "not a prediction" in err and len(err.strip().splitlines()) == 1
        assert notes.read_text() == content


def test_a_last_line_missing_only_its_newline_gets_it(full_run, tmp_path: Path) -> None:
    lines = full_run.read_text().splitlines(keepends=True)
    out = tmp_path / "p.jsonl"
    out.write_text("".join(lines[:3]) + lines[3].rstrip("\n"))
    assert sorted(read_done(out)) == [1, 2, 3, 4]
    assert out.read_text() == "".join(lines[:4])  # the newline added, nothing appended to it


def test_resume_across_separators_inside_answers(predictor, full_run, tiny_bvpi_dir, tmp_path):
    rows = [json.loads(line) for line in full_run.read_text().splitlines()]
    rows[1]["prediction"] = "left\u2028right\u0085and\u2029more"  # written raw by predict
    out = tmp_path / "p.jsonl"
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows[:5])
    assert "\u2028" in text
    out.write_text(text)
    summary = predict_file(tiny_bvpi_dir / "bvpi_sft_test.jsonl", out, predictor,
                           PredictSettings(batch_size=8, max_new_tokens=6), progress=False)  # fmt: skip
    assert (summary.already_done, summary.written) == (5, 3)
    assert [json.loads(line)["line"] for line in out.read_text().split("\n")[:-1]] == list(
        range(1, 9)
    )


def test_a_torn_line_between_complete_ones_is_refused(full_run, tmp_path: Path) -> None:
    lines = full_run.read_text().splitlines(keepends=True)
    out = tmp_path / "p.jsonl"
    out.write_text(lines[0] + lines[1][:15] + "\n" + lines[2])
    with pytest.raises(InputError, match=r"p.jsonl:2: not a prediction line"):
        read_done(out)
    assert out.read_text() == lines[0] + lines[1][:15] + "\n" + lines[2]


def test_a_bomb_image_is_skipped_and_counted(tiny_smolvlm_dir, tiny_bvpi_dir, tmp_path,
                                             cli_in_process, png_header_only) -> None:  # fmt: skip
    png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps({"image": str(tiny_bvpi_dir / "images" / "0.png"), "prompt": "p"}) + "\n"
        + json.dumps({"image": str(tmp_path / "bomb.png"), "prompt": "p"}) + "\n"
    )  # fmt: skip
    out = tmp_path / "p.jsonl"
    code, _, err = cli_in_process("predict", "--model", tiny_smolvlm_dir, "--data", data, "--out",
                                  out, "--max-new-tokens", "4")  # fmt: skip
    assert code == 2 and "is over the limit of 64,000,000 pixels" in err and not out.exists()
    code, stdout, err = cli_in_process("predict", "--model", tiny_smolvlm_dir, "--data", data,
                                       "--out", out, "--max-new-tokens", "4", "--on-bad-image",
                                       "skip")  # fmt: skip
    assert code == 0, err
    assert "skipped 1 rows" in stdout and "decompression bomb" in stdout
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1]


def test_a_bad_shots_from_image_leaves_no_output(tiny_flamingo_dir, tiny_bvpi_dir, tmp_path,
                                                cli_in_process) -> None:  # fmt: skip
    rows = [json.loads(line) for line in
            (tiny_bvpi_dir / "bvpi_sft_train.jsonl").read_text().splitlines()]  # fmt: skip
    rows[3]["image"] = "images/missing.png"
    shots = tmp_path / "shots.jsonl"
    shots.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "p.jsonl"
    code, _, err = cli_in_process(
        "predict", "--model", tiny_flamingo_dir, "--data", tiny_bvpi_dir / "bvpi_sft_test.jsonl",
        "--image-root", tiny_bvpi_dir, "--out", out, "--shots", "1", "--shots-from", shots,
        "--max-new-tokens", "2",
    )  # fmt: skip
    assert code == 2 and "missing.png: image not found" in err and "shots.jsonl:4" in err
    assert not out.exists()


def test_a_spoken_cue_file_replaces_only_a_wav(tmp_path: Path) -> None:
    from roadscene.io import check_output
    from roadscene.predict.speech import is_wav_file

    wav = tmp_path / "cue.wav"
    wav.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    notes = tmp_path / "notes.wav"
    notes.write_text("my notes\n")
    assert is_wav_file(wav) and not is_wav_file(notes)
    check_output(wav, ours=is_wav_file, what="a WAV file")
    with pytest.raises(InputError, match="is not a WAV file written by roadscene"):
        check_output(notes, ours=is_wav_file, what="a WAV file")
