"""Filtering image-caption pairs by CLIP similarity (`roadscene data filter`).

Every row's image and caption are embedded by a CLIP model (batched, on the GPU when there is
one); a row is kept when the cosine of the two L2-normalised embeddings is >= the threshold.
The text scored is the caption (a caption row's `caption`, the `Context:` part of a structured
answer, a conversational row's answer), never the structured fields: CLIP reads 77 tokens and
was trained on captions. Rows without any caption text are kept and counted as unscored.

The 0.28 default is LAION-5B's cutoff for raw cosines of OpenAI's CLIP ViT-B/32; thresholds do
not transfer between CLIP models (docs/data.md).

Embeddings are cached in the output folder (`clip_embeddings.npz`, keyed by the model's
fingerprint, each image's path, size and modification time, and each text), saved every few
batches: a rerun computes nothing and loads no model, and a stopped run loses at most the
batches since the last save.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from roadscene.data.images import open_image, resolve_image
from roadscene.errors import InputError
from roadscene.io import atomic_write, dumps_line, read_records, write_json
from roadscene.targets import parse_response

CACHE_FILE = "clip_embeddings.npz"
REPORT_FILE = "filter_report.json"
HISTOGRAM_FILE = "clip_scores.png"
SAVE_EVERY_S = 30.0


@dataclass
class FilterResult:
    kept: int
    dropped: int
    unscored: int
    computed: int  # embeddings computed in this run (0 when everything came from the cache)
    files: dict[str, Path] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)


def caption_text(row: dict[str, Any]) -> str | None:
    """The caption a row's image is scored against (None: the row has none)."""
    if isinstance(row.get("caption"), str):
        text = row["caption"]
    elif isinstance(row.get("target"), str):
        text = row["target"]
    elif isinstance(row.get("response"), str):
        text = parse_response(row["response"]).context or ""
    elif isinstance(row.get("messages"), list):
        answers = [
            m for m in row["messages"] if isinstance(m, dict) and m.get("role") == "assistant"
        ]
        content = answers[0].get("content") if answers else None
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        text = content if isinstance(content, str) else ""
        if text and parse_response(text).complete:
            text = parse_response(text).context or ""
    else:
        text = ""
    return text.strip() or None


def _row_image(row: dict[str, Any], path: Path, line: int, image_root: Path) -> Path:
    if isinstance(row.get("messages"), list):
        images = row.get("images")
        if not isinstance(images, list) or not images or not isinstance(images[0], str):
            raise InputError("'images' must list the row's image", path=path, line=line)
        return resolve_image(images[0], path.parent)
    image = row.get("image", row.get("image_path"))
    if not isinstance(image, str) or not image:
        raise InputError("missing or non-string 'image'", path=path, line=line, field="image")
    return resolve_image(image, image_root)


class EmbeddingCache:
    """Embeddings by key for one model fingerprint, saved as one .npz file."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.vectors: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["fingerprint"]) == fingerprint:
                    self.vectors = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))

    def save(self) -> None:
        if not self.vectors:
            return
        keys = list(self.vectors)
        with atomic_write(self.path, "wb") as handle:
            np.savez(
                handle,
                fingerprint=np.array(self.fingerprint),
                keys=np.array(keys),
                vectors=np.stack([self.vectors[k] for k in keys]),
            )


def _image_key(path: Path) -> str:
    stat = path.stat()
    return f"image:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def _text_key(text: str) -> str:
    return "text:" + hashlib.sha256(text.encode()).hexdigest()


def filter_by_clip(
    data: str | Path,
    out_dir: str | Path,
    clip_model: str,
    *,
    threshold: float = 0.28,
    image_root: str | Path | None = None,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
) -> FilterResult:
    """Score every row of `data` and write `out_dir`/{data name} (kept rows, same format),
    `{stem}.dropped.jsonl` (dropped rows with `clip_score`), `filter_report.json` and
    `clip_scores.png` (the score histogram with the threshold)."""
    import torch
    from tqdm import tqdm

    from roadscene.models.clip import embed_images, embed_texts, load_clip, model_fingerprint

    data, out_dir = Path(data), Path(out_dir)
    if not -1.0 <= threshold <= 1.0:
        raise InputError(
            f"a cosine threshold must be in [-1, 1]; got {threshold}", field="threshold"
        )
    if out_dir.resolve() == data.parent.resolve():
        raise InputError("write the filtered files into another folder than the data", path=out_dir)
    root = Path(image_root) if image_root is not None else data.parent
    rows = read_records(data)
    items = []  # (line, row, image path, caption)
    for line, row in rows:
        image = _row_image(row, data, line, root)
        if not image.is_file():  # fail before any model work, naming the row
            raise InputError(f"image not found (row {data}:{line})", path=image)
        items.append((line, row, image, caption_text(row)))
    scored = [item for item in items if item[3] is not None]

    cache = EmbeddingCache(out_dir / CACHE_FILE, model_fingerprint(clip_model))
    wanted = {_image_key(i[2]): ("image", i[2]) for i in scored}
    wanted |= {_text_key(i[3]): ("text", i[3]) for i in scored}
    missing = [
        (key, kind, value) for key, (kind, value) in wanted.items() if key not in cache.vectors
    ]
    computed = 0
    if missing:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, processor = load_clip(clip_model, device=device)
        last_save = time.perf_counter()
        bar = tqdm(total=len(missing), desc="CLIP embeddings", disable=not progress)
        for kind in ("image", "text"):
            todo = [(key, value) for key, k, value in missing if k == kind]
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                if kind == "image":
                    vectors = embed_images(model, processor, [open_image(v) for _, v in chunk])
                else:
                    vectors = embed_texts(model, processor, [v for _, v in chunk])
                for (key, _), vector in zip(chunk, vectors.numpy(), strict=True):
                    cache.vectors[key] = vector
                computed += len(chunk)
                bar.update(len(chunk))
                if time.perf_counter() - last_save > SAVE_EVERY_S:
                    cache.save()
                    last_save = time.perf_counter()
        bar.close()
        cache.save()

    kept_rows, dropped_rows, scores, unscored = [], [], [], []
    for line, row, image, caption in items:
        if caption is None:
            kept_rows.append(row)
            unscored.append(line)
            continue
        score = float(cache.vectors[_image_key(image)] @ cache.vectors[_text_key(caption)])
        scores.append(score)
        if score >= threshold:
            kept_rows.append(row)
        else:
            dropped_rows.append({**row, "clip_score": round(score, 6), "line": line})
    kept_file = out_dir / data.name
    dropped_file = out_dir / f"{data.stem}.dropped.jsonl"
    with atomic_write(kept_file) as handle:
        if data.read_text(encoding="utf-8").lstrip().startswith("["):
            import json

            json.dump(kept_rows, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
        else:
            handle.writelines(dumps_line(row) + "\n" for row in kept_rows)
    with atomic_write(dropped_file) as handle:
        handle.writelines(dumps_line(row) + "\n" for row in dropped_rows)
    report = _report(
        data, clip_model, cache.fingerprint, threshold, scores, kept_rows, dropped_rows, unscored
    )
    write_json(out_dir / REPORT_FILE, report)
    _histogram(scores, threshold, clip_model, out_dir / HISTOGRAM_FILE)
    return FilterResult(
        kept=len(kept_rows),
        dropped=len(dropped_rows),
        unscored=len(unscored),
        computed=computed,
        files={
            "kept": kept_file,
            "dropped": dropped_file,
            "report": out_dir / REPORT_FILE,
            "histogram": out_dir / HISTOGRAM_FILE,
        },
        report=report,
    )


def _report(
    data: Path,
    clip_model: str,
    fingerprint: str,
    threshold: float,
    scores: list[float],
    kept: list[Any],
    dropped: list[Any],
    unscored: list[int],
) -> dict[str, Any]:
    values = np.array(scores, dtype=np.float64)
    counts, edges = np.histogram(values, bins=20) if scores else ([], [])
    return {
        "data": str(data),
        "clip_model": clip_model,
        "model_fingerprint": fingerprint,
        "score": "cosine of L2-normalised CLIP image and caption embeddings (77 tokens)",
        "threshold": threshold,
        "rows": len(kept) + len(dropped),
        "kept": len(kept),
        "dropped": len(dropped),
        "unscored_kept": len(unscored),
        "unscored_lines": unscored[:20],
        "scores": {
            "mean": float(values.mean()) if scores else None,
            "quantiles": {
                str(q): float(np.quantile(values, q)) for q in (0.05, 0.25, 0.5, 0.75, 0.95)
            }
            if scores
            else {},
            "min": float(values.min()) if scores else None,
            "max": float(values.max()) if scores else None,
        },
        "histogram": {
            "edges": [round(e, 4) for e in list(edges)],
            "counts": [int(c) for c in counts],
        },
    }


def _histogram(scores: list[float], threshold: float, clip_model: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist(scores, bins=40, color="#4477aa")
    axes.axvline(threshold, color="#cc3311", linestyle="--", label=f"threshold {threshold}")
    axes.set_xlabel("CLIP cosine (image, caption)")
    axes.set_ylabel("rows")
    axes.set_title(f"{len(scores)} pairs, {Path(clip_model).name}", fontsize=9)
    axes.legend()
    figure.tight_layout()
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=100)
    plt.close(figure)
