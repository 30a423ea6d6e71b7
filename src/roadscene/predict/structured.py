"""Grammar-constrained structured answers: the target format as an EBNF grammar, compiled once per
tokenizer with xgrammar, and a beam-search-safe logits processor.

The grammar (``answer_grammar``) is the published answer format of targets.md:

    Sidewalk: {sw}. Road: {rd}. RoadVsSidewalk: {rel}. Nearby: ... [Far: ...] [Context: ...]

followed by the family's end-of-answer token. The model still chooses every value; the grammar
only removes the tokens that would break the format (see docs/structured.md).

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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadscene.schema import OBJECT_CLASSES, ROAD_VALUES, SIDEWALK_VALUES, road_vs_sidewalk
from roadscene.targets import NO_NEARBY, OBJECT_NAMES

if TYPE_CHECKING:
    import torch
    import xgrammar

RELATION_CHOICES: tuple[str, ...] = ("left_of", "right_of", "crossing_front", "unknown")
WHERE_ONE: tuple[str, ...] = ("on the left", "on the center", "on the right")
WHERE_TWO: tuple[str, ...] = (
    "on the left and center",
    "on the left and right",
    "on the center and right",
)
WHERE_THREE = "across the left, center, and right"
CONTEXT_BLOCK = 100  # characters per block of the bounded free-text context (see answer_grammar)


@dataclass(frozen=True)
class GrammarOptions:
    """What the structured-answer grammar allows.

    relation_from_fields: the relation must be the one targets.md derives from the sidewalk and
        road just generated (otherwise the model chooses any of the four).
    max_count: the largest object count a phrase may state (2..max_count in digits).
    context_max_chars: length bound of the free-text `Context:` part (0 = no context allowed).
    allow_far: whether the optional `Far:` list may be generated.
    closing_reserve_tokens: when this few new tokens are left, lists start no new item, so the
        answer's mandatory part ends in time; None = `closing_reserve`.
    """

    relation_from_fields: bool = False
    max_count: int = 20
    context_max_chars: int = 600
    allow_far: bool = True
    closing_reserve_tokens: int | None = None

    @property
    def closing_reserve(self) -> int:
        """Tokens kept in reserve to finish the answer (see `GrammarLogitsProcessor`): by default
        the longest object phrase in characters plus its "." -- enough even for a tokenizer
        that spells every character separately."""
        if self.closing_reserve_tokens is not None:
            return self.closing_reserve_tokens
        longest = max(len(n[1]) for n in OBJECT_NAMES.values())
        return len(f"{self.max_count} ") + longest + len(" farther away ") + len(WHERE_THREE) + 1

    def __post_init__(self) -> None:
        if not 2 <= self.max_count <= 99:
            raise ValueError(f"max_count must be in 2..99, got {self.max_count}")
        if not 0 <= self.context_max_chars <= 2000:
            raise ValueError(f"context_max_chars must be in 0..2000, got {self.context_max_chars}")


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _alternatives(texts: Sequence[str]) -> str:
    return "(" + " | ".join(_quote(t) for t in texts) + ")"


def _count_rule(low: int, high: int) -> str:
    """EBNF alternatives for the decimal numbers low..high (no leading zeros)."""
    return "(" + " | ".join(_quote(str(n)) for n in range(low, high + 1)) + ")"


def answer_grammar(options: GrammarOptions | None = None) -> str:
    """The EBNF grammar (xgrammar / GBNF dialect) of one structured answer.

    Objects follow the renderer exactly: classes in render order, each at most once, `an` before
    a vowel, one object -> one position, two objects -> one or two positions, three or more ->
    any; positions ordered left < center < right.
    """
    options = options or GrammarOptions()
    rules: list[str] = []
    # An optional leading space: SmolVLM answers follow "Assistant:" with one.
    root = '" "? header " " nearby'
    if options.allow_far:
        root += " far?"
    if options.context_max_chars > 0:
        root += " context?"
    rules.append(f"root ::= {root}")

    if options.relation_from_fields:
        per_sidewalk = []
        for sidewalk in SIDEWALK_VALUES:
            roads = " | ".join(
                _quote(f"{road}. RoadVsSidewalk: {road_vs_sidewalk(sidewalk, road)}.")
                for road in ROAD_VALUES
            )
            per_sidewalk.append(f'"{sidewalk}. Road: " ({roads})')
        rules.append('header ::= "Sidewalk: " (' + " | ".join(per_sidewalk) + ")")
    else:
        rules.append(
            'header ::= "Sidewalk: " sidewalk ". Road: " road ". RoadVsSidewalk: " relation "."'
        )
        rules.append(f"sidewalk ::= {_alternatives(SIDEWALK_VALUES)}")
        rules.append(f"road ::= {_alternatives(ROAD_VALUES)}")
        rules.append(f"relation ::= {_alternatives(RELATION_CHOICES)}")

    rules.append(f"where1 ::= {_alternatives(WHERE_ONE)}")
    rules.append(f"where12 ::= {_alternatives((*WHERE_ONE, *WHERE_TWO))}")
    rules.append(f"where123 ::= {_alternatives((*WHERE_ONE, *WHERE_TWO, WHERE_THREE))}")
    rules.append(f"many ::= {_count_rule(3, options.max_count)}")
    for distance, tag in (("close", "near"), ("farther away", "far")):
        if tag == "far" and not options.allow_far:
            continue
        for cls in OBJECT_CLASSES:
            singular, plural = OBJECT_NAMES[cls]
            article = "an" if singular[0] in "aeiou" else "a"
            rules.append(
                f"{tag}_{cls} ::= "
                f'"{article} {singular} {distance} " where1'
                f' | "2 {plural} {distance} " where12'
                f' | many " {plural} {distance} " where123'
            )
        # An ordered, non-empty subset of the classes joined by "; ": tail_i may continue with
        # any later class, so each class appears at most once and in render order.
        for index, cls in enumerate(OBJECT_CLASSES):
            later = [f'"; " {tag}_{c} {tag}_tail_{c}' for c in OBJECT_CLASSES[index + 1 :]]
            tail = f"({' | '.join(later)})?" if later else '""'
            rules.append(f"{tag}_tail_{cls} ::= {tail}")
        firsts = " | ".join(f"{tag}_{c} {tag}_tail_{c}" for c in OBJECT_CLASSES)
        rules.append(f"{tag}_list ::= {firsts}")

    rules.append(f'nearby ::= "Nearby: " ({_quote(NO_NEARBY + ".")} | near_list ".")')
    if options.allow_far:
        rules.append('far ::= " Far: " far_list "."')
    if options.context_max_chars > 0:
        # Free text on one line: no control characters, no "<"/">" (nothing that looks like a
        # special token), not starting with a space. The length bound is spelled as whole
        # 100-character blocks plus a short tail: xgrammar matches a long `{0,n}` repetition
        # (n > 128) about 8x slower per token, which would dominate decoding time.
        text_char = "[^\\x00-\\x1f\\x7f<>]"
        first_char = "[^\\x00-\\x20\\x7f<>]"
        rest = options.context_max_chars - 1
        blocks, tail = divmod(rest, CONTEXT_BLOCK)
        lengths = [
            f"context_block{{{k}}} {text_char}{{0,{CONTEXT_BLOCK - 1}}}" for k in range(blocks)
        ]
        lengths.append(f"context_block{{{blocks}}} {text_char}{{0,{tail}}}")
        lengths = [alt.replace("context_block{0} ", "") for alt in lengths]
        rules.append(f'context ::= " Context: " {first_char} ({" | ".join(lengths)})')
        if blocks:
            rules.append(f"context_block ::= {text_char}{{{CONTEXT_BLOCK}}}")
    return "\n".join(rules) + "\n"


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


# --- views of an answer -----------------------------------------------------------------------------


def answer_annotation(prediction: str, image: str) -> dict[str, Any]:
    """The parsed answer as an annotation form (valid against annotation-schema.json)."""
    from roadscene.targets import parse_response, scene_from_parsed

    scene = scene_from_parsed(parse_response(prediction), image=image)
    return scene.to_form().model_dump(mode="json", exclude_none=True)


def prediction_views(prediction: str, image: str, *, json_view: bool = False) -> dict[str, Any]:
    """Extra keys of a prediction line: always `cue`; with `json_view` also `annotation`."""
    from roadscene.predict.cue import cue_for_parsed
    from roadscene.targets import parse_response

    views: dict[str, Any] = {"cue": cue_for_parsed(parse_response(prediction)).to_dict()}
    if json_view:
        views["annotation"] = answer_annotation(prediction, image)
    return views


# --- `roadscene predict` wiring ----------------------------------------------------------------------

STRUCTURED_TASKS = ("bvpi",)
OUTPUT_FORMATS = ("text", "json")


def structured_predict_options(
    data: str | Path,
    *,
    task: str = "auto",
    structured: bool | None = None,
    relation_from_fields: bool = False,
    output_format: str = "text",
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `predict_file` implementing `--structured`, `--relation-from-fields`
    and `--format`: for the bvpi task the `cue` (+ `annotation`) views of each line, and when
    structured the grammar processor factory (made once `predict_file` has loaded the model,
    so bad input fails before any model work).

    Structured decoding defaults to on for the bvpi task (whose answers have the grammar's
    format) and is refused for other tasks, whose answers are free captions.
    """
    from roadscene.errors import InputError
    from roadscene.io import read_records
    from roadscene.predict.runner import Predictor, detect_task

    if output_format not in OUTPUT_FORMATS:
        raise InputError(
            f"unknown --format '{output_format}'; allowed: {', '.join(OUTPUT_FORMATS)}",
            field="format",
        )
    if task == "auto":
        task = detect_task(read_records(data))
    fields_task = task in STRUCTURED_TASKS
    if structured is None:
        structured = fields_task
    if structured and not fields_task:
        raise InputError(
            f"--structured needs a task with structured answers ({', '.join(STRUCTURED_TASKS)}); "
            f"this is the '{task}' task: use --no-structured",
            field="structured",
        )
    if relation_from_fields and not structured:
        raise InputError("--relation-from-fields needs --structured", field="relation_from_fields")
    if output_format == "json" and not fields_task:
        raise InputError(
            f"--format json needs the bvpi task (answers with fields), not '{task}'", field="format"
        )
    options: dict[str, Any] = {}
    if fields_task:
        json_view = output_format == "json"
        options["row_views"] = lambda text, image: prediction_views(
            text, image, json_view=json_view
        )
    if structured:
        grammar = GrammarOptions(relation_from_fields=relation_from_fields)

        def factory_for(predictor: Predictor) -> Callable[[], Any]:
            return structured_processor_factory(
                predictor.family,
                predictor.model,
                predictor.processor,
                grammar,
                max_new_tokens=max_new_tokens,
            )

        options["processor_factory_for"] = factory_for
    return options
