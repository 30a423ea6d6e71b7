"""Reading a user's files and writing outputs, each done one way for every command.

`roadscene.io.reading`: regular files only, UTF-8 with or without a byte-order mark, lines split at
"\\n" only, bounded JSON nesting and integer size, bounded CSV fields, one-line errors naming the
file and line. `roadscene.io.writing`: atomic writes that never replace what roadscene did not
write and say clearly when a place cannot be written.
"""

from __future__ import annotations

from roadscene.io.reading import (
    CSV_FIELD_LIMIT,
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    MAX_YAML_NODES,
    CsvRow,
    decode_text,
    loads_json,
    loads_yaml,
    read_bytes,
    read_csv,
    read_json,
    read_records,
    read_text,
    regular_file,
    split_lines,
)
from roadscene.io.writing import (
    Ours,
    atomic_dir,
    atomic_write,
    check_output,
    dumps_line,
    place_errors,
    remove_stale_temporaries,
    write_json,
)

__all__ = [
    "CSV_FIELD_LIMIT",
    "CsvRow",
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "MAX_YAML_NODES",
    "Ours",
    "atomic_dir",
    "atomic_write",
    "check_output",
    "decode_text",
    "dumps_line",
    "loads_json",
    "loads_yaml",
    "place_errors",
    "read_bytes",
    "read_csv",
    "read_json",
    "read_records",
    "read_text",
    "regular_file",
    "remove_stale_temporaries",
    "split_lines",
    "write_json",
]
