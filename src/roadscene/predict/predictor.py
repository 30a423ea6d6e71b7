"""A model ready to answer: where it comes from (`ModelCard`: base model, adapter, family, the
task and prompts it was trained on) and the loaded `Predictor` that answers batches of examples.

`roadscene predict`, `describe`, the server and distributed prediction all answer through
`Predictor.generate_batch`, so they decode the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roadscene.data.clips import ClipSettings
from roadscene.data.records import default_prompt
from roadscene.errors import InputError
from roadscene.predict.settings import Decoding
from roadscene.targets import GrammarOptions


@dataclass(frozen=True)
class ModelCard:
    """What a `--model` / `--adapter` pair points at, read from its folders without loading any
    weights: the base model to load, the adapter folder, the family, and the task and prompts it
    was trained on (when it is a roadscene training output)."""

    base: str
    adapter: str | None
    family: str
    task: str | None = None
    prompts: tuple[str, ...] = ()
    #: how its training sampled clips (a roadscene training output; None: not known)
    clip: ClipSettings | None = None

    @classmethod
    def read(
        cls, model: str | Path, adapter: str | Path | None = None, family: str | None = None
    ) -> ModelCard:
        """Resolve a hub id, a saved full model, or a training output folder holding an adapter
        (its base model is read from the saved config / adapter config)."""
        from roadscene.models import detect_family, get_family
        from roadscene.train.config import adapter_base, read_prompts, read_saved_config

        model_path = Path(model)
        if model_path.exists() and not model_path.is_dir():
            raise InputError("--model must be a model folder or a hub id, not a file", path=model)
        if adapter is None and (model_path / "adapter_config.json").is_file():
            adapter = model_path
        if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
            raise InputError("not a PEFT adapter folder (no adapter_config.json)", path=adapter)
        run_folders = [Path(f) for f in (adapter, model) if f is not None and Path(f).is_dir()]
        saved = next((c for c in map(read_saved_config, run_folders) if c is not None), None)
        prompts = next((p for p in map(read_prompts, run_folders) if p), [])
        if adapter is not None and Path(adapter) == model_path:
            base = adapter_base(model_path)
        else:
            base = str(model)
        if family is not None:
            name = get_family(family).name
        elif saved is not None:
            name = saved.model.family
        else:
            name = detect_family(base).name
        return cls(
            base=base,
            adapter=str(adapter) if adapter is not None else None,
            family=name,
            task=saved.data.task if saved is not None else None,
            prompts=tuple(prompts),
            clip=saved.data.clip if saved is not None else None,
        )

    def prompt_for(self, task: str) -> str:
        """The prompt for rows that carry none: the model's most frequent training prompt when
        it was trained on `task`, else the task's default prompt."""
        if self.prompts and (self.task is None or self.task == task):
            return self.prompts[0]
        return default_prompt(task)


@dataclass
class Predictor:
    """A loaded model ready to answer: `Predictor.load(card)`, then `generate_batch(examples,
    decoding)`."""

    family: Any
    model: Any
    processor: Any
    card: ModelCard
    _grammars: dict[tuple[GrammarOptions, int], Callable[[], Any]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def load(cls, card: ModelCard, *, device: str | None = None) -> Predictor:
        from roadscene.models import get_family

        family = get_family(card.family)
        loaded = family.load(card.base, adapter=card.adapter, device=device)
        return cls(family, loaded.model, loaded.processor, card)

    def _grammar_processors(self, grammar: GrammarOptions, max_new_tokens: int) -> Any:
        """A fresh grammar logits processor for one generate call; the grammar is compiled on
        first use (and cached per tokenizer), so a grammar problem shows before generation."""
        key = (grammar, max_new_tokens)
        if key not in self._grammars:
            from roadscene.predict.decoding import structured_processor_factory

            self._grammars[key] = structured_processor_factory(
                self.family, self.model, self.processor, grammar, max_new_tokens=max_new_tokens
            )
        return self._grammars[key]()

    def prepare(self, decoding: Decoding) -> None:
        """Do the one-time work of `decoding` (compile its grammar) before the first batch."""
        if decoding.grammar is not None:
            self._grammar_processors(decoding.grammar, decoding.max_new_tokens)

    def generate_batch(
        self,
        examples: Sequence[Any],
        decoding: Decoding = Decoding(),
        *,
        extra_processors: Sequence[Any] = (),
        **generation_kwargs: Any,
    ) -> list[str]:
        """Answers for one batch of `VisionTextExample` s (answer text only): one per example,
        or with sampling `decoding.samples` per example, example by example. `extra_processors`
        run after the grammar (e.g. timing probes); `generation_kwargs` go to `model.generate`."""
        from transformers import LogitsProcessorList

        processors = LogitsProcessorList()
        if decoding.grammar is not None:
            processors.extend(self._grammar_processors(decoding.grammar, decoding.max_new_tokens))
        processors.extend(extra_processors)
        if processors:
            generation_kwargs["logits_processor"] = processors
        return self.family.generate(
            self.model,
            self.processor,
            examples,
            **{**decoding.generation_kwargs(), **generation_kwargs},
        )

    def predict(
        self, examples: Sequence[Any], decoding: Decoding = Decoding(), *, batch_size: int = 8
    ) -> list[str]:
        """Answers for `examples`, `batch_size` at a time."""
        texts: list[str] = []
        for start in range(0, len(examples), batch_size):
            texts.extend(self.generate_batch(examples[start : start + batch_size], decoding))
        return texts
