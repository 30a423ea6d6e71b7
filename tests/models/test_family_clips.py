"""Clips through each family's own video path: SmolVLM2 and Qwen3-VL take the sampled frames with
their metadata in their processors (exactly those frames, with their timestamps); Flamingo takes a
clip as one media of ordered frames (frame embeddings) and refuses clips without them. Mixed
batches of clips and images give each row what it gives alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from roadscene.data.clips import Clip
from roadscene.data.examples import VisionTextExample
from roadscene.errors import InputError
from roadscene.models import get_family, list_families
from roadscene.models.base import IGNORE_INDEX

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLIP_FAMILIES = [name for name in list_families() if get_family(name).supports_clips]
ANSWER = "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: a car close on the left."


def _clip(frames: int = 4, seed: int = 0, size: int = 64) -> Clip:
    rng = np.random.default_rng(seed)
    images = tuple(
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
        for _ in range(frames)
    )
    indices = tuple(round(i * 15 / (frames - 1)) for i in range(frames))
    return Clip(images, tuple(i / 8 for i in indices), indices, 8.0, 16)


@pytest.fixture(scope="module", params=CLIP_FAMILIES)
def clip_model(request: pytest.FixtureRequest, tiny_model_dir_for, tmp_path_factory):
    """(family, loaded tiny model that takes clips of up to 4 frames)."""
    family = get_family(request.param)
    if request.param == "flamingo":  # the shared tiny Flamingo has no frame embeddings
        folder = family.build_tiny(
            tmp_path_factory.mktemp("flamingo_clips") / "m", sizes={"max_frames": 4}
        )
    else:
        folder = tiny_model_dir_for(request.param)
    loaded = family.load(folder, device="cpu")
    family.check_clips(loaded.model, 4)
    return family, loaded


def test_clip_features_and_answer_only_labels(clip_model) -> None:
    family, loaded = clip_model
    example = VisionTextExample(images=[], clip=_clip(), prompt="Describe.", answer=ANSWER)
    features = family.encode(loaded.processor, example)
    labels = features["labels"]
    answer = labels[labels != IGNORE_INDEX]
    text = loaded.processor.tokenizer.decode(answer, skip_special_tokens=True)
    assert text.strip() == ANSWER
    pixels = {k: v for k, v in features.items() if k in family.image_keys}
    assert pixels, "the clip's frames reach the model"


def test_one_frame_clip_the_last_frame_control_trains(clip_model) -> None:
    """`frames_seen: last` gives a one-frame clip: every family encodes it and computes a loss;
    Qwen3-VL, whose video processor needs a 2-frame temporal group, gets that frame twice."""
    family, loaded = clip_model
    clip = _clip().last_only()
    example = VisionTextExample(images=[], clip=clip, prompt="Describe.", answer=ANSWER)
    features = family.encode(loaded.processor, example)
    batch = family.collate(loaded.processor, [features])
    with torch.no_grad():
        loss = loaded.model(**batch).loss
    assert torch.isfinite(loss)
    if family.name == "qwen3vl":
        assert features["video_grid_thw"][0, 0].item() == 1  # one temporal group
        from roadscene.models.qwen3vl import PATCH, TEMPORAL

        patches = features["pixel_values_videos"].reshape(-1, 3, TEMPORAL, PATCH, PATCH)
        assert torch.equal(patches[:, :, 0], patches[:, :, 1])  # the same frame twice


def test_mixed_batch_of_clips_and_images_equals_each_alone(
    clip_model, token_weighted_loss_check
) -> None:
    family, loaded = clip_model
    examples = [
        VisionTextExample(images=[], clip=_clip(seed=1), prompt="Describe.", answer=ANSWER),
        VisionTextExample(
            images=[_clip(seed=2).frames[0]], prompt="Describe the scene.", answer=ANSWER[:30]
        ),
        VisionTextExample(images=[], clip=_clip(seed=3), prompt="What moves?", answer=ANSWER[:50]),
    ]
    features = [family.encode(loaded.processor, ex) for ex in examples]
    token_weighted_loss_check(family, loaded, features)
    queries = [VisionTextExample(**{**ex.__dict__, "answer": None}) for ex in examples]
    together = family.generate(loaded.model, loaded.processor, queries, max_new_tokens=8)
    alone = [
        family.generate(loaded.model, loaded.processor, [q], max_new_tokens=8)[0] for q in queries
    ]
    assert together == alone


def test_smolvlm_passes_exactly_the_sampled_frames_with_their_timestamps(
    tiny_smolvlm_dir,
) -> None:
    family = get_family("smolvlm")
    loaded = family.load(tiny_smolvlm_dir, device="cpu")
    processor = loaded.processor
    clip = _clip(frames=4)  # frames 0, 5, 10, 15 of 16 at 8 fps
    example = VisionTextExample(images=[], clip=clip, prompt="Describe.")
    first = family.encode(processor, example)
    again = family.encode(processor, example)  # the cached prompt ids: the same tensors
    full = processor(
        text=[family.prompt_text(processor, example)],
        videos=[list(clip.frames)],
        video_metadata=[clip.metadata()],
        do_sample_frames=False,
        return_tensors="pt",
    )
    for features in (first, again):
        assert torch.equal(features["input_ids"], full["input_ids"][0])
        assert torch.equal(features["pixel_values"], full["pixel_values"][0])
    assert first["pixel_values"].shape[0] == 4  # exactly the 4 frames, no resampling
    text = processor.tokenizer.decode(first["input_ids"])
    assert "series of four frames from a 0:00:02" in text
    stamps = [part.split(":<")[0] for part in text.split("Frame from ")[1:]]
    assert stamps == ["00:00", "00:00", "00:01", "00:01"]  # 0, 0.625, 1.25, 1.875 s


def test_flamingo_refuses_clips_without_frame_embeddings(tiny_flamingo_dir) -> None:
    family = get_family("flamingo")
    loaded = family.load(tiny_flamingo_dir, device="cpu")
    with pytest.raises(InputError, match="no frame embeddings.*clips of 4 frames first"):
        family.check_clips(loaded.model, 4)
    example = VisionTextExample(images=[], clip=_clip(), prompt="Describe.")
    batch = family.collate(loaded.processor, [family.encode(loaded.processor, example)])
    with pytest.raises(ValueError, match="cannot tell the frames' order"):
        loaded.model(**batch)


def test_flamingo_frame_embeddings_order_frames_and_leave_still_images_alone(
    tiny_flamingo_dir, tmp_path
) -> None:
    from roadscene.models.flamingo.recipe import FlamingoTrainingSection
    from roadscene.models.flamingo.training import prepare_for_training

    family = get_family("flamingo")
    loaded = family.load(tiny_flamingo_dir, device="cpu", dtype=torch.float32)
    model = loaded.model
    image = VisionTextExample(images=[_clip().frames[0]], prompt="Describe.")
    still = family.collate(loaded.processor, [family.encode(loaded.processor, image)])
    with torch.no_grad():
        before = model(**still).logits
    model = family.prepare_for_clips(model, 4)  # what training on clips does first
    prepare_for_training(model, FlamingoTrainingSection())
    assert model.config.max_num_frames == 4 and model.perceiver.frame_embs.requires_grad
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(**still).logits, before)  # zero-initialised: nothing changes
        model.perceiver.frame_embs.normal_()  # as after training on clips
        clip = _clip()
        features = family.encode(
            loaded.processor, VisionTextExample(images=[], clip=clip, prompt="Describe.")
        )
        forward = model.encode_vision(features["vision_x"][None])
        backward = model.encode_vision(features["vision_x"].flip(1)[None])
    assert not torch.allclose(forward, backward)  # the order of the frames now counts
    model.save_pretrained(tmp_path / "m")
    loaded.processor.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "roadscene_tiny.json").write_text("{}")
    reloaded = family.load(tmp_path / "m", device="cpu", dtype=torch.float32).model
    assert torch.equal(reloaded.perceiver.frame_embs, model.perceiver.frame_embs)
    family.check_clips(reloaded, 4)
