"""The one reading path: what any bytes do to it (hypothesis), and each hostile-file class."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadscene.errors import InputError
from roadscene.io import (
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    loads_json,
    loads_yaml,
    read_csv,
    read_json,
    read_records,
    read_text,
    split_lines,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Text that JSON strings, captions and CSV cells may hold, line and paragraph separators included.
texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)) | st.sampled_from("\r\n\u2028\u0085\v\f"),
    max_size=40,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(rows=st.lists(st.dictionaries(texts, json_values, max_size=4), min_size=1, max_size=6),
       bom=st.booleans(), crlf=st.booleans())  # fmt: skip
def test_jsonl_round_trips_whatever_the_strings_hold(tmp_path_factory, rows, bom, crlf) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "rows.jsonl"
    newline = "\r\n" if crlf else "\n"
    text = "".join(json.dumps(row, ensure_ascii=False) + newline for row in rows)
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    assert read_records(path) == list(enumerate(rows, start=1))


@FUZZ
@given(data=st.binary(max_size=300))
def test_any_bytes_are_records_or_one_input_error(tmp_path_factory, data) -> None:
    path = tmp_path_factory.mktemp("bytes") / "file.jsonl"
    path.write_bytes(data)
    try:
        records = read_records(path)
    except InputError as err:
        assert "\n" not in str(err) and str(path) in str(err)
    else:
        assert all(isinstance(row, dict) for _, row in records)


@FUZZ
@given(text=st.text(alphabet='[]{}":,0123456789-eE.tfnrulas \n', max_size=200))
def test_json_text_is_a_value_or_one_input_error(text) -> None:
    try:
        loads_json(text, path="x.json")
    except InputError as err:
        assert str(err).startswith("x.json") and "\n" not in str(err)


@FUZZ
@given(rows=st.lists(st.lists(texts.filter(lambda t: "\r" not in t and "\n" not in t),
                              min_size=1, max_size=4), min_size=1, max_size=5))  # fmt: skip
def test_csv_round_trips_fields_with_commas_quotes_and_separators(tmp_path_factory, rows) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    path = tmp_path_factory.mktemp("csv") / "t.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8")
    read = read_csv(path)
    assert [r.fields for r in read] == rows
    assert all(r.line == r.last_line for r in read)


@FUZZ
@given(text=st.text(max_size=300))
def test_any_csv_text_is_rows_or_one_input_error(tmp_path_factory, text) -> None:
    path = tmp_path_factory.mktemp("csvtext") / "t.csv"
    path.write_text(text, encoding="utf-8")
    try:
        rows = read_csv(path)
    except InputError as err:
        assert "\n" not in str(err)
    else:
        assert all(1 <= r.line <= r.last_line for r in rows)


@FUZZ
@given(text=st.text(alphabet="ab:-&*[]{}!?|>'\"#%@ \n\t0123456789", max_size=200))
def test_any_yaml_text_is_a_value_or_one_input_error(text) -> None:
    try:
        loads_yaml(text, path="r.yaml")
    except InputError as err:
        assert "\n" not in str(err)


@given(text=texts)
def test_lines_split_at_newline_only(text) -> None:
    lines = split_lines(text.replace("\r", "") + "\n")
    assert lines == text.replace("\r", "").split("\n")


# --- the classes of the catalogue ---------------------------------------------------------------


def test_bom_is_dropped_and_crlf_lines_end_at_newline(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(b"\xef\xbb\xbfimage_path,target\r\na.jpg,x\r\n")
    assert [row.fields for row in read_csv(path)] == [["image_path", "target"], ["a.jpg", "x"]]
    assert read_text(path).startswith("image_path")


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\r", "\v", "\f"])
def test_a_separator_inside_a_json_string_stays_in_its_line(tmp_path: Path, separator) -> None:
    path = tmp_path / "p.jsonl"
    rows = [{"image": "a.jpg", "text": f"left{separator}right"}, {"image": "b.jpg", "text": "x"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert read_records(path) == [(1, rows[0]), (2, rows[1])]


def test_deep_nesting_and_long_integers_are_one_line_errors(tmp_path: Path) -> None:
    for text, message in [
        ("[" * 100_000 + "]" * 100_000, "nested deeper"),
        ("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "nested deeper"),
        ('{"a": ' + "7" * 5000 + "}", f"more than {MAX_INT_DIGITS} digits"),
    ]:
        path = tmp_path / "x.json"
        path.write_text(text)
        with pytest.raises(InputError, match=message):
            read_json(path)
    assert loads_json("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None


def test_a_field_over_128_kb_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b\n1,2\n3,"' + "x" * 200_000 + "\n4,5\n")
    with pytest.raises(InputError, match=r"t.csv:3: a field is longer than 131072 characters"):
        read_csv(path)


def test_what_a_path_is_is_said(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "broken").symlink_to(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    cases = {
        "fifo": "is a named pipe (FIFO), not a file",  # reading it would wait forever
        "loop": "symbolic link loop",
        "broken": "broken symbolic link",
        "missing": "file not found",
        "file/below": "a folder on its path is a file",
        ".": "is a folder, not a file",
    }
    for name, message in cases.items():
        with pytest.raises(InputError) as info:
            read_text(tmp_path / name)
        assert message in str(info.value)


def test_non_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(InputError, match=r"t.jsonl:2: not valid UTF-8"):
        read_text(path)


def test_yaml_alias_bombs_are_refused_fast() -> None:
    import time

    nine = ", ".join(["*a"] * 9)
    levels = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        levels.append(f"{name}: &{name} [{nine.replace('*a', '*' + previous)}]")
    bomb = "\n".join(levels) + "\ndata: {task: *i}\n"  # 9**9 strings once expanded
    start = time.perf_counter()
    with pytest.raises(InputError, match="expands to more than"):
        loads_yaml(bomb, path="r.yaml")
    with pytest.raises(InputError, match="refers to a value that contains it"):
        loads_yaml("a: &x [1, *x]\n")
    assert time.perf_counter() - start < 2
    # ordinary anchors still work
    assert loads_yaml("a: &x {k: 1}\nb: *x\n") == {"a": {"k": 1}, "b": {"k": 1}}
