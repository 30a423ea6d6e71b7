"""CLIPScore of a caption against its image (torchmetrics' `clip_score` with a local or hub CLIP
model, loaded by `roadscene.models.clip.load_clip`), scored per sample."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadscene.errors import InputError
from roadscene.models.clip import load_clip

if TYPE_CHECKING:
    from roadscene.metrics.captions import CaptionPair


def _features_tensor(output: Any) -> Any:
    # transformers 5 returns a ModelOutput (projected features in `pooler_output`), 4.x a tensor.
    return output if hasattr(output, "norm") else output.pooler_output


def _clip_for_torchmetrics(model: Any) -> Any:
    """The CLIP model behind the interface torchmetrics' clip_score calls (features as tensors)."""
    import torch

    class ClipFeatures(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip
            self.config = clip.config

        def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return _features_tensor(self.clip.get_image_features(pixel_values=pixel_values))

        def get_text_features(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
        ) -> torch.Tensor:
            output = self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
            return _features_tensor(output)

    return ClipFeatures(model).eval()


def existing_image(image: str, image_root: str | Path) -> Path:
    """The image file for a record; a missing file (or a folder, a pipe...) is an InputError
    naming the path."""
    from roadscene.data.images import resolve_image
    from roadscene.io import regular_file

    path = resolve_image(image, image_root)
    try:
        return regular_file(path, "image")
    except InputError as err:
        raise InputError(err.reason, path=path, field="image") from None


def clip_scores(
    pairs: list[CaptionPair], image_root: str | Path, model_name_or_path: str
) -> list[float]:
    """Per-sample CLIPScore = 100 * max(cos(image, text), 0) by torchmetrics' `clip_score`.

    Scored one pair at a time so that the clamp at 0 applies per sample (the CLIPScore paper's
    definition); torchmetrics' CLIPScore class would clamp the corpus mean instead. An empty
    prediction scores 0.
    """
    import torch
    from torchmetrics.functional.multimodal import clip_score
    from torchvision.transforms.functional import pil_to_tensor
    from tqdm import tqdm

    from roadscene.data.images import open_image

    paths = [existing_image(pair.image, image_root) for pair in pairs]  # fail before loading
    model, processor = load_clip(model_name_or_path)
    model = _clip_for_torchmetrics(model)
    scores = []
    with torch.inference_mode():
        progress = tqdm(zip(pairs, paths, strict=True), total=len(pairs), desc="CLIPScore")
        for pair, path in progress:
            if not pair.prediction.strip():
                # No answer (missing or empty) scores 0; CLIP would happily embed "".
                scores.append(0.0)
                continue
            pixels = pil_to_tensor(open_image(path))  # (3, H, W) uint8
            value = clip_score(
                pixels, pair.prediction, model_name_or_path=lambda: (model, processor)
            )
            scores.append(float(value))
    return scores
