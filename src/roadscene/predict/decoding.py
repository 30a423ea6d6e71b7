"""Grammar-constrained decoding: the answer grammar (`roadscene.targets.grammar`) compiled once per
tokenizer with xgrammar, and a beam-search-safe logits processor.

Why our own processor and not ``xgrammar.contrib.hf.LogitsProcessor``: the stock one keeps one
matcher per batch row, but beam search reorders rows every step, so it accepts tokens into the
wrong matcher. ``GrammarLogitsProcessor`` keys the matcher state on the generated prefix itself
(token tuple -> matcher): a row's state is found from its own tokens whatever row it sits in,
and a prefix that several beams extend is forked. A fresh processor is made per ``generate`` call.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from roadscene.targets.grammar import GrammarOptions, answer_grammar

if TYPE_CHECKING:
    import torch
    import xgrammar

# --- compilation, cached per tokenizer ---------------------------------------------------------------


def text_token_info(
    tokenizer: Any, *, vocab_size: int, stop_token_ids: Sequence[int]
) -> xgrammar.TokenizerInfo:
    """xgrammar's view of the vocabulary with every special / added control token blanked.

    Blank entries are special tokens to xgrammar: never allowed as text. This keeps `<image>`,
    `<fake_token_around_image>`, `<global-img>`, `<row_i_col_j>`, padding etc. out of answers;
    the stop tokens stay allowed where the grammar ends. `vocab_size` is the MODEL's logits width
    (rows past the tokenizer's vocabulary are blank too).
    """
    import xgrammar as xgr

    info = xgr.TokenizerInfo.from_huggingface(
        tokenizer, vocab_size=vocab_size, stop_token_ids=list(stop_token_ids)
    )
    decoded = list(info.decoded_vocab)
    control_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    for token_id, added in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).items():
        if getattr(added, "special", False) or str(added).startswith("<"):
            control_ids.add(int(token_id))
    for token_id in control_ids:
        if 0 <= token_id < len(decoded):
            decoded[token_id] = b""
    return xgr.TokenizerInfo(
        decoded,
        xgr.VocabType.RAW,
        vocab_size=vocab_size,
        stop_token_ids=list(stop_token_ids),
        add_prefix_space=info.add_prefix_space,
    )


class _CompilerCache:
    """One GrammarCompiler per (tokenizer object, vocab size, stop tokens), one compiled grammar
    per grammar text. Compilation is the expensive part (hundreds of ms for a real vocabulary),
    so it happens once per process, not per `generate` call. Entries live as long as their
    tokenizer object."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # tokenizer -> (vocab size, stop ids) -> (compiler, grammar text -> compiled grammar)
        self._entries: weakref.WeakKeyDictionary[Any, dict[tuple, tuple[Any, dict[str, Any]]]] = (
            weakref.WeakKeyDictionary()
        )

    def compiled(
        self, tokenizer: Any, *, vocab_size: int, stop_token_ids: Sequence[int], grammar: str
    ) -> xgrammar.CompiledGrammar:
        import xgrammar as xgr

        key = (int(vocab_size), tuple(stop_token_ids))
        with self._lock:
            per_tokenizer = self._entries.setdefault(tokenizer, {})
            if key not in per_tokenizer:
                info = text_token_info(
                    tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids
                )
                per_tokenizer[key] = (xgr.GrammarCompiler(info, max_threads=2), {})
            compiler, grammars = per_tokenizer[key]
            if grammar not in grammars:
                grammars[grammar] = compiler.compile_grammar(grammar)
            return grammars[grammar]


_CACHE = _CompilerCache()


def compile_answer_grammar(
    tokenizer: Any,
    *,
    vocab_size: int,
    stop_token_ids: Sequence[int],
    options: GrammarOptions | None = None,
) -> xgrammar.CompiledGrammar:
    """The compiled answer grammar for a tokenizer (cached; see `_CompilerCache`)."""
    if not stop_token_ids:
        raise ValueError("structured decoding needs at least one stop token id")
    return _CACHE.compiled(
        tokenizer,
        vocab_size=vocab_size,
        stop_token_ids=stop_token_ids,
        grammar=answer_grammar(options),
    )


# --- the logits processor -------------------------------------------------------------------------


def token_bits(token_ids: Sequence[int], vocab_size: int) -> torch.Tensor:
    """One xgrammar bitmask row (int32 words, bit t % 32 of word t // 32) with `token_ids` set."""
    import torch

    words = [0] * ((vocab_size + 31) // 32)
    for token_id in token_ids:
        words[token_id // 32] |= 1 << (token_id % 32)
    # as signed 32-bit integers
    return torch.tensor([w - (1 << 32) if w >= 1 << 31 else w for w in words], dtype=torch.int32)


class _ClosingMasks:
    """Bit masks used to steer an answer to its end (per compiled grammar and width)."""

    def __init__(self, compiled_grammar: xgrammar.CompiledGrammar, vocab_size: int) -> None:

        self.decoded = list(compiled_grammar.tokenizer_info.decoded_vocab)
        item_openers = [t for t, text in enumerate(self.decoded) if b";" in text]
        self.no_new_item = ~token_bits(item_openers, vocab_size)  # tokens that open a list item

    def steer_to_end(self, bitmask: torch.Tensor, row: int, prefix: tuple[int, ...]) -> None:
        text = b"".join(self.decoded[t] for t in prefix if t < len(self.decoded))
        if b" Context: " in text:
            return  # free text: cutting it anywhere leaves a complete answer
        narrowed = bitmask[row] & self.no_new_item
        if bool(narrowed.any()):
            bitmask[row] = narrowed


_CLOSING_CACHE: weakref.WeakKeyDictionary[Any, dict[int, _ClosingMasks]] = (
    weakref.WeakKeyDictionary()
)


def _closing_masks(compiled_grammar: xgrammar.CompiledGrammar, vocab_size: int) -> _ClosingMasks:
    try:
        per_width = _CLOSING_CACHE.setdefault(compiled_grammar, {})
    except TypeError:  # not weak-referenceable: no caching
        return _ClosingMasks(compiled_grammar, vocab_size)
    if vocab_size not in per_width:
        per_width[vocab_size] = _ClosingMasks(compiled_grammar, vocab_size)
    return per_width[vocab_size]


class GrammarLogitsProcessor:
    """Masks every token that would leave the grammar, for greedy, sampling and beam search.

    State is keyed on the generated prefix (the tokens after the prompt), not on the row index:
    at each step a row's matcher is its parent prefix's matcher advanced by the row's last token.
    When several rows extend one prefix (beams), the extra ones fork it. Rows whose prefix cannot
    continue (a finished or dead beam, already scored -inf by the search) may only emit a stop
    token. Rows with identical prefixes share one mask computation.

    Length budget: given `max_new_tokens`, once only `closing_reserve` tokens are left no list may
    start a new item (`;`), so the `Nearby:` list ends with the phrase in progress and the
    mandatory part is not cut off (provided the header was written before that point). Optional
    parts (`Far:`, `Context:`) may still follow and be cut at the budget.

    Use one instance per `generate` call (it remembers the prompt length of its first call).
    """

    def __init__(
        self,
        grammar_for_width: Callable[[int], xgrammar.CompiledGrammar],
        *,
        max_new_tokens: int | None = None,
        closing_reserve: int = 0,
    ) -> None:
        import xgrammar as xgr

        self.max_new_tokens = max_new_tokens
        self.closing_reserve = closing_reserve
        self._closing: _ClosingMasks | None = None

        self._xgr = xgr
        # The grammar is resolved from the logits width seen on the first call: the model's
        # vocabulary size, which may differ from the tokenizer's (padding rows, tied heads).
        self._grammar_for_width = grammar_for_width
        self.compiled_grammar: xgrammar.CompiledGrammar | None = None
        self.vocab_size = 0
        self.stop_token_ids: list[int] = []
        self._prompt_length: int | None = None
        # generated prefix -> matcher that has accepted exactly that prefix (None: dead)
        self._states: dict[tuple[int, ...], Any] = {}
        self._bitmask: torch.Tensor | None = None
        self._stop_bits: torch.Tensor | None = None  # mask row allowing only the stop tokens
        self._batch_matcher: Any = None

    def _advance(self, prefixes: list[tuple[int, ...]]) -> dict[tuple[int, ...], Any]:
        """Matchers for this step's prefixes, from the previous step's ones."""
        if not self._states:  # first step: every prefix is empty
            return {prefix: self._xgr.GrammarMatcher(self.compiled_grammar) for prefix in prefixes}
        children: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for prefix in dict.fromkeys(prefixes):  # distinct, in order
            children.setdefault(prefix[:-1], []).append(prefix)
        states: dict[tuple[int, ...], Any] = {}
        advancing: list[tuple[tuple[int, ...], Any]] = []
        for parent, kids in children.items():
            matcher = self._states.get(parent)
            for index, prefix in enumerate(kids):
                if matcher is None or matcher.is_terminated():
                    states[prefix] = None
                else:
                    # the last child may take the parent's matcher itself; the others fork it
                    advancing.append(
                        (prefix, matcher if index == len(kids) - 1 else matcher.fork())
                    )
        if advancing:  # one call into xgrammar for the whole batch
            accepted = self._xgr.BatchGrammarMatcher.batch_accept_token(
                [matcher for _, matcher in advancing], [prefix[-1] for prefix, _ in advancing]
            )
            for (prefix, matcher), ok in zip(advancing, accepted, strict=True):
                states[prefix] = matcher if ok else None
        return states

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._prompt_length is None:
            self._prompt_length = input_ids.shape[1]
            self.vocab_size = int(scores.shape[-1])
            self.compiled_grammar = self._grammar_for_width(self.vocab_size)
            self.stop_token_ids = list(self.compiled_grammar.tokenizer_info.stop_token_ids)
            self._stop_bits = token_bits(self.stop_token_ids, self.vocab_size)
            self._batch_matcher = self._xgr.BatchGrammarMatcher(max_threads=1)
            if self.max_new_tokens is not None:
                self._closing = _closing_masks(self.compiled_grammar, self.vocab_size)
        elif scores.shape[-1] != self.vocab_size:
            raise ValueError(
                f"logits width changed from {self.vocab_size} to {scores.shape[-1]} within one "
                "generate call; use a fresh processor per call"
            )
        generated = input_ids[:, self._prompt_length :].tolist()
        prefixes = [tuple(row) for row in generated]
        self._states = self._advance(prefixes)

        batch_size = scores.shape[0]
        if self._bitmask is None or self._bitmask.shape[0] != batch_size:
            self._bitmask = self._xgr.allocate_token_bitmask(batch_size, self.vocab_size)
        bitmask = self._bitmask
        first_row: dict[tuple[int, ...], int] = {}  # distinct prefix -> first row holding it
        live: list[tuple[int, tuple[int, ...], Any]] = []
        for row, prefix in enumerate(prefixes):
            if prefix in first_row:
                continue
            first_row[prefix] = row
            matcher = self._states[prefix]
            if matcher is None or matcher.is_terminated():
                bitmask[row] = self._stop_bits
            else:
                live.append((row, prefix, matcher))
        if live:  # one call into xgrammar for every distinct live prefix
            self._batch_matcher.batch_fill_next_token_bitmask(
                [matcher for _, _, matcher in live], bitmask, [row for row, _, _ in live]
            )
            if self._closing is not None and self.max_new_tokens is not None:
                for row, prefix, _ in live:
                    left = self.max_new_tokens - len(prefix)  # tokens left, this one included
                    if left <= self.closing_reserve:
                        self._closing.steer_to_end(bitmask, row, prefix)
        for row, prefix in enumerate(prefixes):
            if first_row[prefix] != row:  # same state as an earlier row: copy its mask
                bitmask[row] = bitmask[first_row[prefix]]
        if scores.device.type == "cuda":
            self._xgr.apply_token_bitmask_inplace(scores, bitmask.to(scores.device))
        else:
            masked = scores.to("cpu") if scores.device.type != "cpu" else scores
            self._xgr.apply_token_bitmask_inplace(masked, bitmask)
            scores = masked.to(scores.device)
        return scores


def model_vocab_size(model: Any) -> int:
    """Width of the model's logits (output embedding rows, or the input embedding when the head
    is tied to it), which may differ from the tokenizer's vocabulary size."""
    for getter in ("get_output_embeddings", "get_input_embeddings"):
        module = getattr(model, getter, lambda: None)()
        weight = getattr(module, "weight", None)
        if weight is not None:
            return int(weight.shape[0])
    config = getattr(model, "config", None)
    text_config = getattr(config, "text_config", None) or config
    return int(text_config.vocab_size)


def structured_logits_processor(
    processor: Any,
    stop_token_ids: Sequence[int],
    options: GrammarOptions | None = None,
    *,
    max_new_tokens: int | None = None,
) -> Any:
    """A fresh `LogitsProcessorList` with the answer grammar, for ONE `generate` call. The grammar
    is compiled (or found in the cache) for the logits width of that call."""
    from transformers import LogitsProcessorList

    tokenizer = getattr(processor, "tokenizer", processor)

    def grammar_for_width(vocab_size: int) -> xgrammar.CompiledGrammar:
        return compile_answer_grammar(
            tokenizer, vocab_size=vocab_size, stop_token_ids=stop_token_ids, options=options
        )

    reserve = (options or GrammarOptions()).closing_reserve
    return LogitsProcessorList(
        [
            GrammarLogitsProcessor(
                grammar_for_width, max_new_tokens=max_new_tokens, closing_reserve=reserve
            )
        ]
    )


def structured_processor_factory(
    family: Any,
    model: Any,
    processor: Any,
    options: GrammarOptions | None = None,
    *,
    max_new_tokens: int | None = None,
) -> Callable[[], Any]:
    """A factory of fresh grammar processors for `Predictor.generate_batch` / `predict_file`.

    The grammar is compiled here, once (and cached per tokenizer), so the first batch is not
    slowed by it and a grammar problem shows before any generation starts.
    """
    stop_token_ids = family.stop_token_ids(processor)
    tokenizer = getattr(processor, "tokenizer", processor)
    compile_answer_grammar(
        tokenizer,
        vocab_size=model_vocab_size(model),
        stop_token_ids=stop_token_ids,
        options=options,
    )

    def make() -> Any:
        return structured_logits_processor(
            processor, stop_token_ids, options, max_new_tokens=max_new_tokens
        )

    return make
