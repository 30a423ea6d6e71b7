"""SPICE (scene-graph F-score of a caption against its references), run where Stanford CoreNLP's
jars exist and reported as unavailable, with the reason, where they do not. Nothing is ever
downloaded."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

from roadscene.errors import InputError

SPICE_JARS_ENV = "ROADSCENE_SPICE_JARS"
# The CoreNLP jars pycocoevalcap's SPICE wrapper would download at first use (never done here).
SPICE_CORENLP_JARS: tuple[str, ...] = (
    "stanford-corenlp-3.6.0.jar",
    "stanford-corenlp-3.6.0-models.jar",
)


def _spice_dir() -> Path:
    # pycocoevalcap itself is a namespace package (no __file__); its spice folder is a package.
    import pycocoevalcap.spice

    return Path(pycocoevalcap.spice.__file__).resolve().parent


def find_spice_jars(spice_jars: str | Path | None = None) -> tuple[Path | None, str | None]:
    """Where SPICE's CoreNLP jars are: (folder, None), or (None, why SPICE is unavailable).

    Looks in the folder given (option, else `$ROADSCENE_SPICE_JARS`), else in pycocoevalcap's
    spice/lib. A folder the user names that lacks the jars is an InputError; their absence from
    pycocoevalcap is not (SPICE is then reported as unavailable). Nothing is ever downloaded.
    """
    given = spice_jars if spice_jars is not None else os.environ.get(SPICE_JARS_ENV) or None
    if given is not None:
        folder = Path(given)
        if not folder.is_dir():
            raise InputError("SPICE jar folder not found", path=folder, field="spice_jars")
        missing = [name for name in SPICE_CORENLP_JARS if not (folder / name).is_file()]
        if missing:
            raise InputError(
                f"SPICE jar folder lacks {', '.join(missing)}", path=folder, field="spice_jars"
            )
        return folder, None
    lib = _spice_dir() / "lib"
    if all((lib / name).is_file() for name in SPICE_CORENLP_JARS):
        return lib, None
    return None, (
        f"SPICE needs Stanford CoreNLP 3.6.0 ({', '.join(SPICE_CORENLP_JARS)}) in {lib} or in a "
        f"folder given with --spice-jars / ${SPICE_JARS_ENV}; pycocoevalcap would download them "
        "at first use, which roadscene never does"
    )


def run_spice(
    tokenized_refs: dict[int, list[str]], tokenized_preds: dict[int, list[str]], jar_dir: Path
) -> tuple[float, list[float]]:
    """SPICE with pycocoevalcap's spice-1.0.jar and its lib, plus the CoreNLP jars in `jar_dir`.

    Runs the jar itself instead of pycocoevalcap's `Spice` class because that class downloads
    CoreNLP when it is absent and only looks in its own folder. Same input, same flags
    (`-subset -silent`), no disk cache.
    """
    spice_dir = _spice_dir()
    ids = sorted(tokenized_refs)
    items = [{"image_id": i, "test": tokenized_preds[i][0], "refs": tokenized_refs[i]} for i in ids]
    with tempfile.TemporaryDirectory(prefix="roadscene-spice-") as tmp:
        in_file, out_file = Path(tmp) / "in.json", Path(tmp) / "out.json"
        in_file.write_text(json.dumps(items), encoding="utf-8")
        classpath = os.pathsep.join(
            [str(spice_dir / "spice-1.0.jar"), str(spice_dir / "lib" / "*"), str(jar_dir / "*")]
        )
        command = [
            "java",
            "-Xmx8G",
            "-cp",
            classpath,
            "edu.anu.spice.SpiceScorer",
            str(in_file),
            "-out",
            str(out_file),
            "-subset",
            "-silent",
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
            # A Java stack trace: its first "...Exception/Error..." line says what went wrong.
            cause = next((ln for ln in lines if "Exception" in ln or "Error" in ln), lines[-1])
            raise RuntimeError(f"SPICE failed (exit {done.returncode}): {cause.strip()}")
        results = json.loads(out_file.read_text(encoding="utf-8"))
    by_id = {item["image_id"]: float(item["scores"]["All"]["f"]) for item in results}
    per_sample = [by_id[i] for i in ids]
    return sum(per_sample) / len(per_sample), per_sample
