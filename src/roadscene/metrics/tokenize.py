"""PTB tokenisation for the caption metrics, item by item, never shifted.

pycocoevalcap's `PTBTokenizer` writes every text on its own line, runs Stanford's PTBTokenizer
(Java) over the file and hands the output lines back in order. A text holding something Java
takes for a line break ("\\r", U+2028, U+0085, a vertical tab...) becomes two lines there, and
every later item is then scored against the wrong reference. Here each text is made one line
first (`one_line_text`: control characters and line / paragraph separators become spaces; only
the *tokens* matter to the metrics) and the output must hold exactly one line per text, or the
evaluation stops. The jar, its options and the punctuation removed are pycocoevalcap's own, so
the tokens are the same as theirs for every ordinary text.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Every character Java's readers or the PTB lexer may end a line at (U+2028 and U+2029 are the
# only line / paragraph separators in Unicode), and any other control character.
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def one_line_text(text: str) -> str:
    """`text` with control characters and line / paragraph separators replaced by spaces."""
    return _NOT_ONE_LINE.sub(" ", text)


def ptb_tokenize(texts: Sequence[str]) -> list[str]:
    """Lower-cased PTB tokens of each text, punctuation removed, joined by spaces: what
    pycocoevalcap's `PTBTokenizer.tokenize` gives each caption, one result per text in order.

    Raises FileNotFoundError when `java` is missing and RuntimeError when the tokenizer fails or
    returns another number of lines than it was given."""
    from pycocoevalcap.tokenizer import ptbtokenizer

    jar_dir = Path(ptbtokenizer.__file__).resolve().parent
    if not texts:
        return []
    with tempfile.TemporaryDirectory(prefix="roadscene-ptb-") as tmp:
        source = Path(tmp) / "captions.txt"
        source.write_text("".join(one_line_text(t) + "\n" for t in texts), encoding="utf-8")
        done = subprocess.run(
            [
                "java",
                "-cp",
                ptbtokenizer.STANFORD_CORENLP_3_4_1_JAR,
                "edu.stanford.nlp.process.PTBTokenizer",
                "-preserveLines",
                "-lowerCase",
                str(source),
            ],
            cwd=jar_dir,
            capture_output=True,
            stdin=subprocess.DEVNULL,
        )
    if done.returncode != 0:
        reason = (done.stderr.decode("utf-8", "replace").strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the PTB tokenizer (Java) failed: {reason}")
    lines = done.stdout.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(texts):
        raise RuntimeError(
            f"the PTB tokenizer returned {len(lines)} lines for {len(texts)} texts; the texts "
            "and their references would be misaligned, so nothing is scored"
        )
    punctuation = set(ptbtokenizer.PUNCTUATIONS)
    return [
        " ".join(word for word in line.rstrip().split(" ") if word not in punctuation)
        for line in lines
    ]
