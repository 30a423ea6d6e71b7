"""Tokenizer and image preprocessing for Flamingo, plus the original prompt formats.

The tokenizer is GPT-NeoX-20B's plus `<|endofchunk|>`, `<image>` and `<PAD>` (added in that order,
as OpenFlamingo does). Images use CLIP preprocessing (short side → 224 bicubic, centre crop,
CLIP mean/std) through transformers' `CLIPImageProcessor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from transformers import CLIPImageProcessor, PreTrainedTokenizerBase, PreTrainedTokenizerFast

ENDOFCHUNK = "<|endofchunk|>"
MEDIA_TOKEN = "<image>"
PAD_TOKEN = "<PAD>"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def add_flamingo_tokens(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Add `<|endofchunk|>`, `<image>`, `<PAD>` (in that order) and pad on the left."""
    tokenizer.add_special_tokens({"extra_special_tokens": [ENDOFCHUNK, MEDIA_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.padding_side = "left"
    return tokenizer


def clip_image_processor(image_size: int) -> CLIPImageProcessor:
    return CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=Image.Resampling.BICUBIC,
        do_center_crop=True,
        do_convert_rgb=True,
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def caption_prompt(caption: str | None = None) -> str:
    """`<image>Output:{caption}<|endofchunk|>`; without a caption, the query `<image>Output:`."""
    if caption is None:
        return f"{MEDIA_TOKEN}Output:"
    return f"{MEDIA_TOKEN}Output:{caption}{ENDOFCHUNK}"


def instruction_prompt(prompt: str, response: str | None = None) -> str:
    """`<image>User: {prompt}\\nAssistant: {response}<|endofchunk|>` (query without response)."""
    query = f"{MEDIA_TOKEN}User: {prompt}\nAssistant:"
    if response is None:
        return query
    return f"{query} {response}{ENDOFCHUNK}"


class FlamingoProcessor:
    """Turns (text with `<image>` tokens, images) into `input_ids`, `attention_mask`, `vision_x`."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, image_processor: CLIPImageProcessor):
        missing = [
            token for token in (ENDOFCHUNK, MEDIA_TOKEN) if token not in tokenizer.get_vocab()
        ]
        if missing or tokenizer.pad_token is None:
            raise ValueError(
                f"tokenizer lacks the Flamingo tokens {missing or [PAD_TOKEN]}; "
                "use add_flamingo_tokens() first"
            )
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.tokenizer.padding_side = "left"

    @property
    def media_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(MEDIA_TOKEN)

    @property
    def endofchunk_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(ENDOFCHUNK)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> FlamingoProcessor:
        # Saved folders always hold tokenizer.json; AutoTokenizer would also try (and warn about)
        # reading our config.json as a transformers-known model type.
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
        image_processor = CLIPImageProcessor.from_pretrained(str(directory))
        return cls(tokenizer, image_processor)

    def save_pretrained(self, directory: str | Path) -> None:
        self.tokenizer.save_pretrained(str(directory))
        self.image_processor.save_pretrained(str(directory))

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """N images -> (N, 3, H, W) float pixels."""
        return self.image_processor(images=list(images), return_tensors="pt")["pixel_values"]

    def __call__(
        self,
        texts: Sequence[str],
        images: Sequence[Sequence[Image.Image]],
        max_length: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """texts[b] must hold exactly len(images[b]) `<image>` tokens; every row the same count.

        Returns input_ids/attention_mask (B, T), left-padded, and vision_x (B, T_img, 1, 3, H, W).
        """
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} texts but {len(images)} image lists")
        counts = {len(row) for row in images}
        if len(counts) != 1:
            raise ValueError(
                f"every row needs the same number of images, got counts {sorted(counts)}"
            )
        for row, (text, row_images) in enumerate(zip(texts, images, strict=True)):
            if text.count(MEDIA_TOKEN) != len(row_images):
                raise ValueError(
                    f"row {row}: {text.count(MEDIA_TOKEN)} {MEDIA_TOKEN} tokens but "
                    f"{len(row_images)} images"
                )
        encoded = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=max_length is not None,
            max_length=max_length,
            return_tensors="pt",
        )
        num_media = counts.pop()
        flat = [image for row in images for image in row]
        pixels = self.pixels(flat)  # (B·T_img, 3, H, W)
        vision_x = pixels.reshape(
            len(texts), num_media, 1, *pixels.shape[1:]
        )  # (B, T_img, 1, 3, H, W)
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "vision_x": vision_x,
        }
