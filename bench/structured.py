"""Cost of grammar-constrained decoding: decode throughput with vs without the answer grammar.

    .venv/bin/python bench/structured.py [--model DIR] [--family smolvlm] [--batch-size 4]
        [--images 16] [--max-new-tokens 128] [--repeats 3]

Without --model a tiny random-init SmolVLM is built in a temporary folder (seconds). Both modes
run in this process on the same images, interleaved (A B A B ...), after a warm-up of each (the
grammar is compiled during the warm-up, as `predict` does once per run). Throughput counts decode
steps x batch rows per second (a step costs the same whether a row has finished or not); the
ratio unconstrained / constrained is the slowdown. Goal: <= 1.2x. Absolute numbers depend on
machine load; the ratio measured in one process is what we record (docs/performance.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path


class StepCounter:
    """A no-op logits processor that counts decode steps (one call per step)."""

    def __init__(self) -> None:
        self.steps = 0

    def __call__(self, input_ids, scores):
        self.steps += 1
        return scores


def _images(count: int, seed: int = 0) -> list:
    from PIL import Image

    rng = random.Random(seed)
    out = []
    for _ in range(count):
        size = (rng.randint(32, 96), rng.randint(32, 96))
        out.append(Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: tiny)")
    parser.add_argument("--family", default="smolvlm")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch
    from transformers import LogitsProcessorList

    from roadscene.data.examples import VisionTextExample
    from roadscene.models import get_family
    from roadscene.predict.decoding import structured_processor_factory
    from roadscene.targets import DEFAULT_PROMPT, GrammarOptions, parse_response

    torch.set_num_threads(args.threads)
    family = get_family(args.family)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model or family.build_tiny(Path(tmp) / "tiny", seed=0)
        loaded = family.load(model_dir)
    examples = [
        VisionTextExample(images=[img], prompt=DEFAULT_PROMPT) for img in _images(args.images)
    ]
    batches = [examples[i : i + args.batch_size] for i in range(0, len(examples), args.batch_size)]
    # No length steering here: both modes may run to --max-new-tokens, so the per-step cost of
    # the grammar is what is compared.
    make_grammar = structured_processor_factory(
        family, loaded.model, loaded.processor, GrammarOptions()
    )

    def run(constrained: bool) -> tuple[float, int, list[str]]:
        steps, texts, start = 0, [], time.perf_counter()
        for batch in batches:
            counter = StepCounter()
            processors = make_grammar() if constrained else LogitsProcessorList()
            processors.append(counter)
            texts += family.generate(
                loaded.model,
                loaded.processor,
                batch,
                max_new_tokens=args.max_new_tokens,
                logits_processor=processors,
            )
            steps += counter.steps * len(batch)
        return time.perf_counter() - start, steps, texts

    run(False), run(True)  # warm-up (grammar compilation happens here)
    rates: dict[bool, list[float]] = {False: [], True: []}
    complete = 0
    for _ in range(args.repeats):
        for constrained in (False, True):
            seconds, steps, texts = run(constrained)
            rates[constrained].append(steps / seconds)
            if constrained:
                complete = sum(parse_response(t).complete for t in texts)
    free, constrained = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"family {args.family}, batch {args.batch_size}, {args.images} images, "
        f"max_new_tokens {args.max_new_tokens}, torch threads {args.threads}, "
        f"{args.repeats} repeats (median)"
    )
    print(f"unconstrained: {free:8.1f} tokens/s")
    print(f"constrained:   {constrained:8.1f} tokens/s  ({complete}/{len(examples)} complete)")
    print(
        f"slowdown (unconstrained / constrained tokens/s): {free / constrained:.3f}x (goal <= 1.2)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
