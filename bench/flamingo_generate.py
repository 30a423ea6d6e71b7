"""Flamingo generation: the KV cache vs recomputing the whole sequence each step, and few-shot
cost, same process, same random-init model, same prompts.

    .venv/bin/python bench/flamingo_generate.py [--new-tokens 32] [--shots 2] [--repeats 3]

Model: a random-init Flamingo between the tiny test model and OpenFlamingo-3B (CLIP 64 px width
128 × 4 layers, perceiver 2 × 64 latents, MosaicGPT 256 × 4 layers, 8 heads, vocab 50280).
Prompt: `shots` demonstrations (image + 20-token answer) then the query image; batch 4, greedy,
`eos_token_id=None` so every run generates exactly `new-tokens` tokens.
Absolute times depend on the (shared) machine's load; the ratios are what we record.
"""

from __future__ import annotations

import argparse
import time
from functools import partial

import torch

from roadscene.models.flamingo.configuration_flamingo import FlamingoConfig, MosaicGPTConfig
from roadscene.models.flamingo.modeling_flamingo import FlamingoForConditionalGeneration

VOCAB = 50280
MEDIA, ENDOFCHUNK = 50278, 50277


def build_model() -> FlamingoForConditionalGeneration:
    config = FlamingoConfig(
        vision_config={
            "hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4,
            "num_attention_heads": 4, "image_size": 64, "patch_size": 8,
        },
        text_config=MosaicGPTConfig(d_model=256, n_heads=8, n_layers=4, vocab_size=VOCAB),
        perceiver_depth=2, cross_attn_heads=4, gate_init=0.5,
    )  # fmt: skip
    torch.manual_seed(0)
    return FlamingoForConditionalGeneration(config).eval()


def prompt(batch: int, shots: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    pieces = []
    for _ in range(shots):
        answer = torch.randint(0, 50000, (batch, 20), generator=generator)
        pieces += [torch.full((batch, 1), MEDIA), answer, torch.full((batch, 1), ENDOFCHUNK)]
    pieces += [
        torch.full((batch, 1), MEDIA),
        torch.randint(0, 50000, (batch, 4), generator=generator),
    ]
    input_ids = torch.cat(pieces, dim=1)
    vision_x = torch.randn(batch, shots + 1, 1, 3, 64, 64, generator=generator)
    return input_ids, vision_x


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared box)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model()
    settings = {
        "max_new_tokens": args.new_tokens,
        "do_sample": False,
        "eos_token_id": None,
        "pad_token_id": 50279,
    }

    results = {}
    for shots in (0, args.shots):
        input_ids, vision_x = prompt(args.batch, shots)
        with torch.inference_mode():
            cached_out = model.generate(input_ids, vision_x=vision_x, use_cache=True, **settings)
            uncached_out = model.generate(input_ids, vision_x=vision_x, use_cache=False, **settings)
        assert torch.equal(cached_out, uncached_out), "cache changed the greedy output"
        for use_cache in (True, False):
            kwargs = {"vision_x": vision_x, "use_cache": use_cache, **settings}
            seconds = timed(partial(model.generate, input_ids, **kwargs), args.repeats)
            results[(shots, use_cache)] = seconds
            print(
                f"shots={shots} prompt={input_ids.shape[1]} tokens cache={use_cache}: {seconds:.3f} s "
                f"({args.batch * args.new_tokens / seconds:.1f} tokens/s)"
            )
    for shots in (0, args.shots):
        print(
            f"shots={shots}: cache speed-up {results[(shots, False)] / results[(shots, True)]:.2f}x"
        )
    print(
        f"{args.shots}-shot / 0-shot time (cached): {results[(args.shots, True)] / results[(0, True)]:.2f}x"
    )


if __name__ == "__main__":
    main()
