"""`train.motion_loss_weight`: the weighted answer loss counts the tokens of each motion word that
many times and is otherwise the model's own loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from roadscene.data.examples import VisionTextExample
from roadscene.errors import InputError
from roadscene.models import get_family
from roadscene.schema import MOTIONS
from roadscene.train.loss import motion_word_tokens, weighted_token_loss

ANSWER = (
    "Sidewalk: center. Road: left. RoadVsSidewalk: left_of. Nearby: a person close on the "
    "center, approaching; a car close on the left, standing still. Far: none."
)


def _random_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 12, 20, generator=generator)
    labels = torch.randint(10, 20, (3, 12), generator=generator)  # no word token by chance
    labels[:, :4] = -100  # the prompt
    labels[1, 9:] = -100  # padding
    return logits, labels


def test_weight_one_is_the_mean_cross_entropy() -> None:
    logits, labels = _random_batch()
    loss = weighted_token_loss([[5], [7, 8]], 1.0)({"logits": logits}, labels)
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 20), labels[:, 1:].reshape(-1))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_tokens_of_whole_words_count_their_weight() -> None:
    logits, labels = _random_batch()
    labels[0, 6] = 5  # the one-token word
    labels[2, 9:11] = torch.tensor([7, 8])  # the two-token word
    labels[1, 5] = 7  # its first token alone: not the word
    loss = weighted_token_loss([[5], [7, 8]], 4.0)({"logits": logits}, labels)
    per_token = F.cross_entropy(
        logits[:, :-1].reshape(-1, 20), labels[:, 1:].reshape(-1), reduction="none"
    ).view(3, 11)
    weights = torch.ones(3, 11)
    weights[0, 5] = weights[2, 8] = weights[2, 9] = 4.0  # targets are labels shifted by one
    valid = labels[:, 1:] != -100
    expected = (per_token * weights)[valid].sum() / valid.sum()
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    plain = weighted_token_loss([[5], [7, 8]], 1.0)({"logits": logits}, labels)
    assert float(loss) > float(plain)


def test_accumulated_halves_add_up_to_the_whole_batch() -> None:
    """Normalised by the Trainer's `num_items_in_batch`, micro-batches sum to the full batch's
    loss, as gradient accumulation and data parallelism need."""
    logits, labels = _random_batch()
    labels[0, 6] = 5
    loss = weighted_token_loss([[5]], 3.0)
    whole = loss({"logits": logits}, labels)
    count = int((labels[:, 1:] != -100).sum())
    halves = loss({"logits": logits[:2]}, labels[:2], num_items_in_batch=count) + loss(
        {"logits": logits[2:]}, labels[2:], num_items_in_batch=torch.tensor(count)
    )
    assert float(halves) == pytest.approx(float(whole), rel=1e-6)


def test_weight_one_equals_the_models_own_loss(tiny_smolvlm_dir) -> None:
    family = get_family("smolvlm")
    loaded = family.load(tiny_smolvlm_dir, device="cpu", dtype=torch.float32)
    images = [Image.new("RGB", (96, 96), colour) for colour in ("gray", "teal")]
    features = [
        family.encode(
            loaded.processor,
            VisionTextExample(
                images=[image], prompt="Describe.", answer=ANSWER if i else ANSWER[:60]
            ),
        )
        for i, image in enumerate(images)
    ]
    batch = family.collate(loaded.processor, features, padding_side="right")
    labels = batch.pop("labels")
    words = motion_word_tokens(loaded.processor.tokenizer)
    with torch.no_grad():
        own = loaded.model(**batch, labels=labels).loss
        ours = weighted_token_loss(words, 1.0)(loaded.model(**batch), labels)
        heavier = weighted_token_loss(words, 5.0)(loaded.model(**batch), labels)
    assert float(ours) == pytest.approx(float(own), rel=1e-5)
    assert float(heavier) > float(own)  # the second answer holds motion words


def test_motion_words_as_the_answer_tokenizes_them(tiny_smolvlm_dir) -> None:
    tokenizer = get_family("smolvlm").load(tiny_smolvlm_dir, device="cpu").processor.tokenizer
    words = motion_word_tokens(tokenizer)
    answer = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    spelled = [tokenizer(f" {word}", add_special_tokens=False)["input_ids"] for word in MOTIONS]
    assert words == spelled
    for word in (words[MOTIONS.index("approaching")], words[MOTIONS.index("standing still")]):
        assert any(answer[i : i + len(word)] == word for i in range(len(answer)))


def test_a_motion_word_without_tokens_is_refused() -> None:
    with pytest.raises(InputError, match="no token for the motion word"):
        motion_word_tokens(lambda text, add_special_tokens=False: {"input_ids": []})
