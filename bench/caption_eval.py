"""Caption evaluation speed: (whole evaluation wall time) / (METEOR alone), same process.

    .venv/bin/python bench/caption_eval.py [--predictions FILE] [--repeats 2]

"METEOR alone" = pycocoevalcap's Meteor() (cold JVM start, paraphrase table load) plus its
compute_score on the already tokenised 333 items: the floor for any evaluation that includes
METEOR. "whole" = roadscene.metrics.captions.evaluate_captions on the file (read, clean, PTB
tokenise, BLEU, METEOR, ROUGE-L, CIDEr). "sequential" = the same metrics one after another the way
pycocoevalcap's COCOEvalCap runs them (two tokenizer JVMs, then each scorer), for reference.
Goal: whole / METEOR <= 1.2. Absolute times depend on machine load; the ratios are what we record.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from roadscene.metrics.captions import evaluate_captions
from roadscene.metrics.records import clean_text, read_predictions
from roadscene.paths import sensation_dir


def _inputs(path: Path) -> tuple[dict[int, list[dict]], dict[int, list[dict]]]:
    records = read_predictions(path)
    gts = {i: [{"caption": r.extra["target"]}] for i, r in enumerate(records)}
    res = {i: [{"caption": clean_text(r.text)}] for i, r in enumerate(records)}
    return gts, res


def meteor_alone(gts_tok: dict, res_tok: dict) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    start = time.perf_counter()
    meteor = Meteor()
    meteor.compute_score(gts_tok, res_tok)
    elapsed = time.perf_counter() - start
    del meteor
    return elapsed


def sequential(gts: dict, res: dict) -> float:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    start = time.perf_counter()
    tokenizer = PTBTokenizer()
    gts_tok, res_tok = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    Bleu(4).compute_score(gts_tok, res_tok, verbose=0)
    for scorer in (Meteor(), Rouge(), Cider()):
        scorer.compute_score(gts_tok, res_tok)
        del scorer
    return time.perf_counter() - start


def whole(path: Path) -> float:
    start = time.perf_counter()
    evaluate_captions(path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--predictions",
        type=Path,
        default=sensation_dir() / "predictions" / "smol_caption_base_test.json",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-sequential", action="store_true", help="skip the reference run")
    args = parser.parse_args()

    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts, res = _inputs(args.predictions)
    tokenizer = PTBTokenizer()
    gts_tok, res_tok = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    times: dict[str, list[float]] = {"meteor": [], "whole": [], "sequential": []}
    for _ in range(args.repeats):  # interleaved so that load changes hit both alike
        times["meteor"].append(meteor_alone(gts_tok, res_tok))
        times["whole"].append(whole(args.predictions))
        if not args.no_sequential:
            times["sequential"].append(sequential(gts, res))
    med = {name: statistics.median(values) for name, values in times.items() if values}
    print(f"items: {len(gts)}, repeats: {args.repeats}")
    for name, values in times.items():
        if values:
            print(
                f"{name:>10}: median {med[name]:.2f} s  ({', '.join(f'{v:.2f}' for v in values)})"
            )
    print(f"ratio whole / METEOR alone: {med['whole'] / med['meteor']:.3f}  (goal <= 1.2)")
    if "sequential" in med:
        print(f"ratio sequential / METEOR alone: {med['sequential'] / med['meteor']:.3f}")


if __name__ == "__main__":
    main()
