"""Caption metrics (compat): pycocoevalcap BLEU-1..4, METEOR, ROUGE-L, CIDEr, SPICE; CLIPScore.

Per-sample scoring (:func:`score_caption_pairs`) is kept apart from corpus aggregation and the
report (:func:`evaluate_captions`). The Java parts (PTB tokenizer, METEOR, SPICE) run
concurrently: METEOR's JVM is started before tokenising (cold-loading its paraphrase table is
the slowest part of an evaluation; docs/performance.md), and METEOR and SPICE then score in worker
threads while BLEU, ROUGE-L and CIDEr run in Python; the subprocess waits release the GIL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from roadscene.errors import InputError
from roadscene.io import read_records
from roadscene.metrics.clipscore import clip_scores
from roadscene.metrics.records import (
    CleanMode,
    DuplicatePolicy,
    PredictionRecord,
    as_records,
    check_choice,
    clean_text,
    join_predictions,
)
from roadscene.metrics.results import EvaluationResult, signature
from roadscene.metrics.spice import find_spice_jars, run_spice
from roadscene.metrics.tokenize import ptb_tokenize
from roadscene.schema import image_key, read_csv_rows

REFERENCE_TEXT_KEYS: tuple[str, ...] = ("caption", "target", "reference")


@dataclass(frozen=True)
class CaptionPair:
    """One item to score: the cleaned prediction against its single reference."""

    image: str
    prediction: str
    reference: str
    raw_prediction: str
    missing: bool = False


# --- inputs -------------------------------------------------------------------------------------


def read_references(path: str | Path, split: str | None = None) -> dict[str, tuple[str, str]]:
    """Reference captions by image key -> (image path, caption), in file order.

    Accepts a JSON array / JSONL of {image|image_path, caption|target} (what `roadscene data
    build` writes as captions_{split}.json) or a CSV with `image_path,target[,split]` columns
    (captions.csv; `split` filters it).
    """
    path = Path(path)
    references: dict[str, tuple[str, str]] = {}
    if path.suffix.lower() == ".csv":
        rows = read_csv_rows(path, ("image_path", "target"), "captions")
        if split is None and "split" in rows[0][1]:
            # every split's captions would be items, the unpredicted ones scored as empty
            raise InputError(
                "the file has several splits: choose one with --split", path=path, field="split"
            )
        for line, row in rows:
            if split is not None and row.get("split") != split:
                continue
            key = image_key(row["image_path"])
            if key in references:
                raise InputError(f"duplicate reference for image '{key}'", path=path, line=line)
            references[key] = (row["image_path"], row["target"])
        if not references:
            raise InputError(f"no references for split '{split}'", path=path, field="split")
        return references
    records = read_records(path)
    if split is not None and not any("split" in obj for _, obj in records):
        # a captions_{split}.json holds one split already: a --split would silently do nothing
        raise InputError(
            f"--split '{split}' given, but no reference here names a split",
            path=path,
            field="split",
        )
    for line, obj in records:
        image_field = next((k for k in ("image", "image_path") if k in obj), None)
        text_field = next((k for k in REFERENCE_TEXT_KEYS if k in obj), None)
        if image_field is None or text_field is None:
            raise InputError(
                "expected keys image|image_path and caption|target", path=path, line=line
            )
        if split is not None and obj.get("split", split) != split:
            continue
        key = image_key(str(obj[image_field]))
        if key in references:
            raise InputError(f"duplicate reference for image '{key}'", path=path, line=line)
        references[key] = (str(obj[image_field]), str(obj[text_field] or ""))
    return references


def build_caption_pairs(
    records: list[PredictionRecord],
    references: Mapping[str, tuple[str, str]] | None = None,
    *,
    clean: CleanMode = "auto",
    on_duplicate: DuplicatePolicy = "error",
    source: str | None = None,
) -> tuple[list[CaptionPair], dict[str, Any]]:
    """Pair predictions with references; returns the pairs and the join counts.

    Without `references`, each record's `target` key is its reference and the records are the
    items. With references, the references are the items: a missing prediction is scored as an
    empty text (counted), predictions for other images are reported and ignored.
    """
    if references is None:
        references = {}
        for record in records:
            target = record.extra.get("target")
            if not isinstance(target, str):
                raise InputError(
                    "no reference: give --references or a 'target' key",
                    path=source or "<predictions>",
                    line=record.line,
                    field="target",
                )
            references.setdefault(record.key, (record.image, target))
    joined = join_predictions(records, references.keys(), on_duplicate=on_duplicate, source=source)
    pairs = []
    for key, (image, reference) in references.items():
        record = joined.by_key.get(key)
        raw = record.text if record is not None else ""
        pairs.append(
            CaptionPair(
                image=record.image if record is not None else image,
                prediction=clean_text(raw, clean),
                reference=reference,
                raw_prediction=raw,
                missing=record is None,
            )
        )
    if not pairs:
        raise InputError("nothing to evaluate: no prediction records", path=source)
    return pairs, joined.counts()


# --- pycocoevalcap scoring ----------------------------------------------------------------------


def _java_missing() -> InputError:
    return InputError(
        "'java' not found on PATH: pycocoevalcap's PTB tokenizer and METEOR need Java 8 or newer"
    )


def score_caption_pairs(
    predictions: list[str],
    references: list[str],
    *,
    spice_jar_dir: Path | None = None,
) -> tuple[dict[str, float | None], dict[str, list[float]], dict[str, str]]:
    """pycocoevalcap metrics of aligned prediction/reference lists (one reference per item).

    Returns (corpus scores, per-sample scores, reasons for metrics that could not run).
    """
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    try:
        # Start METEOR's JVM first: it loads while the tokenizer runs.
        meteor = Meteor()
    except FileNotFoundError:
        raise _java_missing() from None
    unavailable: dict[str, str] = {}
    try:
        # One tokenizer run for both sides, each text made one line first and the output
        # checked to hold one line per text, so item i is always scored against reference i.
        try:
            tokens = ptb_tokenize([*references, *predictions])
        except FileNotFoundError:
            raise _java_missing() from None
        except RuntimeError as err:
            raise InputError(str(err)) from None
        n = len(references)
        gts = {i: [tokens[i]] for i in range(n)}
        res = {i: [tokens[n + i]] for i in range(n)}
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="coco-java") as pool:
            meteor_future = pool.submit(meteor.compute_score, gts, res)
            spice_future = (
                pool.submit(run_spice, gts, res, spice_jar_dir) if spice_jar_dir else None
            )
            corpus: dict[str, float | None] = {}
            per_sample: dict[str, list[float]] = {}
            bleu, bleu_samples = Bleu(4).compute_score(gts, res, verbose=0)
            for n in range(4):
                corpus[f"BLEU-{n + 1}"] = float(bleu[n])
                per_sample[f"BLEU-{n + 1}"] = [float(s) for s in bleu_samples[n]]
            for name, scorer in (("ROUGE-L", Rouge()), ("CIDEr", Cider())):
                score, samples = scorer.compute_score(gts, res)
                corpus[name] = float(score)
                per_sample[name] = [float(s) for s in samples]
            score, samples = meteor_future.result()
            corpus["METEOR"], per_sample["METEOR"] = float(score), [float(s) for s in samples]
            corpus["SPICE"] = None
            if spice_future is None:
                unavailable["SPICE"] = "no CoreNLP jars"
            else:
                try:
                    score, samples = spice_future.result()
                    corpus["SPICE"], per_sample["SPICE"] = score, samples
                except RuntimeError as err:
                    unavailable["SPICE"] = str(err)
    finally:
        del meteor  # its __del__ closes the JVM
    return corpus, per_sample, unavailable


# --- the evaluation -----------------------------------------------------------------------------


def _words(text: str) -> int:
    return len(text.split())


def evaluate_captions(
    predictions: str | Path | Iterable[PredictionRecord | Mapping[str, Any] | tuple[str, str]],
    references: str | Path | Mapping[str, str | tuple[str, str]] | None = None,
    *,
    split: str | None = None,
    image_root: str | Path | None = None,
    clip_model: str | None = None,
    clean: CleanMode = "auto",
    spice_jars: str | Path | None = None,
    on_duplicate: DuplicatePolicy = "error",
) -> EvaluationResult:
    """Caption metrics of predictions against references (definitions: docs/evaluation.md).

    `predictions`: a prediction file, or in-memory records / dicts / (image, text) pairs.
    `references`: a captions JSON/JSONL/CSV file, a mapping image -> caption (or image key ->
    (image path, caption)), or None to use each prediction's `target`. Returns the report (`metrics`, `n`, `unavailable`,
    `counts`, `signature`) and one details row per item.
    """
    check_choice("clean", clean, ("auto", "none"))
    if split is not None and not isinstance(references, str | Path):
        raise InputError(
            "--split chooses the references of one split from a --references file; without one "
            "it would do nothing",
            field="split",
        )
    records, source = as_records(predictions)
    if isinstance(references, str | Path):
        reference_map = read_references(references, split)
    elif references is not None:
        # in memory: image -> caption, or image key -> (image path, caption)
        reference_map = {
            image_key(image): value if isinstance(value, tuple) else (image, value)
            for image, value in references.items()
        }
    else:
        reference_map = None
    pairs, counts = build_caption_pairs(
        records, reference_map, clean=clean, on_duplicate=on_duplicate, source=source
    )
    jar_dir, spice_reason = find_spice_jars(spice_jars)
    # CLIPScore first: a missing image or model fails before the JVMs start.
    clip: list[float] | None = None
    clip_reason: str | None = None
    if clip_model is not None and image_root is not None:
        clip = clip_scores(pairs, image_root, clip_model)
    else:
        missing = [
            opt
            for opt, value in (("--image-root", image_root), ("--clip-model", clip_model))
            if value is None
        ]
        clip_reason = (
            f"CLIPScore needs the images and a CLIP model: missing {' and '.join(missing)}"
        )
    corpus, per_sample, unavailable = score_caption_pairs(
        [p.prediction for p in pairs], [p.reference for p in pairs], spice_jar_dir=jar_dir
    )
    if spice_reason is not None:
        unavailable["SPICE"] = spice_reason
    if clip_reason is not None:
        unavailable["CLIPScore"] = clip_reason
    n = len(pairs)
    metrics: dict[str, Any] = {
        "CIDEr": corpus["CIDEr"],
        "SPICE": corpus["SPICE"],
        "CLIPScore": sum(clip) / n if clip is not None else None,
        **{f"BLEU-{k}": corpus[f"BLEU-{k}"] for k in range(1, 5)},
        "METEOR": corpus["METEOR"],
        "ROUGE-L": corpus["ROUGE-L"],
        "avg_prediction_length": sum(_words(p.raw_prediction) for p in pairs) / n,
        "avg_target_length": sum(_words(p.reference) for p in pairs) / n,
    }
    if clip is not None:
        per_sample["CLIPScore"] = clip
    details = []
    for index, pair in enumerate(pairs):
        row: dict[str, Any] = {
            "image": pair.image,
            "missing": pair.missing,
            "prediction": pair.prediction,
            "reference": pair.reference,
        }
        row.update({name: values[index] for name, values in per_sample.items()})
        details.append(row)
    report = {
        "task": "captions",
        "definition": "compat",
        "metrics": metrics,
        "n": n,
        "unavailable": unavailable,
        "counts": counts,
        "signature": signature(
            metrics={
                "pycocoevalcap": _version("pycocoevalcap"),
                "torchmetrics": _version("torchmetrics"),
            },
            settings={
                "clean": clean,
                "tokenizer": "PTB (pycocoevalcap)",
                "references_per_item": 1,
                "on_duplicate": on_duplicate,
                "clip_model": clip_model,
                "spice_jars": str(jar_dir) if jar_dir else None,
                "split": split,
            },
            data={
                "predictions": source,
                "references": str(references) if isinstance(references, str | Path) else None,
            },
        ),
    }
    return EvaluationResult(report=report, details=details)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
