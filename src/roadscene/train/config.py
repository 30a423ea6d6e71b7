"""Typed training configuration: defaults -> YAML recipe -> `--set key=value` overrides.

Every field has a default and a help string; validation errors name the bad value and the
allowed ones. The resolved config is written (`roadscene_config.yaml`) into the run folder and
into every checkpoint, with the prompts the model was trained on (`roadscene_prompts.json`), so
`predict` and `describe` can rebuild everything from the folder alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from roadscene.data.augment import AugmentSection
from roadscene.data.clips import ClipSettings
from roadscene.data.mix import MixSection
from roadscene.errors import InputError, excerpt
from roadscene.io import loads_yaml, read_json, read_text
from roadscene.models.finetune import FinetuneSection

CONFIG_FILENAME = "roadscene_config.yaml"
PROMPTS_FILENAME = "roadscene_prompts.json"
MAX_SAVED_PROMPTS = 50


class _Section(BaseModel):
    # inf / nan are never meaningful settings (learning_rate: .inf trains to NaN weights)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelSection(_Section):
    family: str = Field("smolvlm", description="Model family (roadscene.models.list_families()).")
    name_or_path: str = Field(
        "HuggingFaceTB/SmolVLM2-2.2B-Instruct", description="Hub id or local model folder."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; auto = bf16 on CUDA, fp32 on CPU."
    )

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        from roadscene.models import list_families

        if value not in list_families():
            raise ValueError(f"unknown family '{value}'; allowed: {', '.join(list_families())}")
        return value


class DataSection(_Section):
    task: Literal["caption", "bvpi", "annotated"] = Field(
        "bvpi",
        description="caption: captions_{split}.json -> caption; bvpi: bvpi_sft_{split}.jsonl "
        "prompt -> response; annotated: annotation JSON in the prompt -> Nearby/Far/Context text.",
    )
    data_dir: str = Field("data/processed", description="Folder written by `roadscene data build`.")
    image_root: str = Field(
        "", description="Folder image paths are resolved against ('' = relative to data_dir)."
    )
    train_split: str = Field("train", description="Split trained on.")
    eval_split: str | None = Field("val", description="Split for eval loss (null: no evaluation).")
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="Missing/unreadable image: stop naming it, or skip and count it."
    )
    max_train_examples: int | None = Field(None, ge=1, description="Use the first N train rows.")
    max_eval_examples: int | None = Field(None, ge=1, description="Use the first N eval rows.")
    cache_encoded: bool = Field(
        False,
        description="Keep encoded tensors (token ids + pixels) in memory after the first epoch; "
        "good for tiny images, too big for full-size SmolVLM tiles.",
    )
    train_file: str | None = Field(
        None,
        description="Train on this file instead of the train split's (any task file, or the "
        "conversational format of `roadscene data export`).",
    )
    eval_file: str | None = Field(
        None, description="Evaluate on this file instead of the eval split's."
    )
    augment: AugmentSection = Field(
        default_factory=AugmentSection,
        description="Weather / lighting augmentation of training images, on the fly and seeded.",
    )
    mix: MixSection | None = Field(
        None, description="Several weighted sources instead of one train file (a task mix)."
    )
    clip: ClipSettings = Field(
        default_factory=ClipSettings,
        description="How rows naming a `video` or `frames` are sampled (saved with the model: "
        "prediction samples clips the same way).",
    )


class TrainSection(_Section):
    output_dir: str = Field("runs/smolvlm", description="Run folder (checkpoints, final model).")
    num_epochs: float = Field(3.0, gt=0, description="Epochs (ignored when max_steps > 0).")
    max_steps: int = Field(
        -1, ge=-1, description="Stop after this many optimiser steps (-1: epochs; 0 is refused)."
    )
    batch_size: int = Field(2, ge=1, description="Per-device train batch size.")
    eval_batch_size: int = Field(8, ge=1, description="Per-device eval batch size.")
    grad_accum: int = Field(4, ge=1, description="Gradient accumulation steps.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_beta2: float = Field(0.999, gt=0, lt=1, description="AdamW beta2.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = Field(
        "linear", description="Learning-rate schedule after warm-up."
    )
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping.")
    motion_loss_weight: float = Field(
        1.0,
        ge=1.0,
        description="Loss weight of the tokens of each motion word (standing still, "
        "approaching, moving away, crossing): what the clip's frames decide "
        "(1: every token counts the same).",
    )
    seed: int = Field(
        0, ge=0, le=2**32 - 1, description="Seed for initialisation, shuffling and dropout."
    )
    padding: Literal["longest", "max_length"] = Field(
        "longest",
        description="longest: pad each batch to its longest example (dynamic); max_length: pad "
        "every batch to pad_to_length.",
    )
    pad_to_length: int = Field(384, ge=1, description="Length used when padding=max_length.")
    group_by_length: bool = Field(False, description="Batch examples of similar length together.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for activation memory.")
    bf16: Literal["auto", "true", "false"] = Field(
        "auto", description="bf16 mixed precision; auto = on CUDA with bf16 support."
    )
    logging_steps: int = Field(10, ge=1, description="Log the training loss every N steps.")
    eval_steps: int = Field(
        100, ge=1, description="Eval loss + generation metrics + checkpoint every N steps."
    )
    save_total_limit: int | None = Field(2, ge=1, description="Checkpoints kept (best kept too).")
    dataloader_num_workers: int = Field(0, ge=0, description="DataLoader worker processes.")
    report_to: str = Field("none", description="Trainer loggers (none, tensorboard, ...).")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (null: default).")

    @field_validator("max_steps")
    @classmethod
    def _steps_or_epochs(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (train for num_epochs) or a number of steps >= 1; got 0")
        return value


class GenerationEvalSection(_Section):
    enabled: bool = Field(True, description="Generate on a val subset at every eval step.")
    num_examples: int = Field(16, ge=1, description="Val examples generated each time.")
    batch_size: int = Field(8, ge=1, description="Generation batch size.")
    max_new_tokens: int = Field(128, ge=1, description="Generation length limit.")
    keep_best: bool = Field(
        True, description="Keep the checkpoint with the best field accuracy as the final model."
    )


#: TRL `DPOTrainer` loss types (`DPOConfig.loss_type`).
PreferenceLoss = Literal[
    "sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard",
    "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm",
]  # fmt: skip


class PreferenceSection(_Section):
    """The preference stage (`stage: dpo`): TRL's DPOTrainer on (prompt, chosen, rejected)
    pairs, starting from an SFT run (`model.name_or_path`)."""

    beta: float = Field(
        0.1,
        gt=0,
        description="How far the policy may move from the reference (the SFT model); higher "
        "keeps it closer. For ipo it is tau.",
    )
    loss_type: list[PreferenceLoss] = Field(
        default_factory=lambda: ["sigmoid"],
        min_length=1,
        description="TRL loss(es): sigmoid (DPO), ipo, hinge, robust, ...; several are summed "
        "with loss_weights (e.g. [sigmoid, sft] for DPO + an SFT term on the chosen answer).",
    )
    loss_weights: list[float] | None = Field(
        None, description="One weight per loss_type (null: 1 each)."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="Assumed label-noise rate (robust, exo_pair losses)."
    )
    max_length: int | None = Field(
        None,
        ge=1,
        description="Cut chosen / rejected answers so prompt + answer fit this many tokens "
        "(null: no cut). A pair whose prompt alone (with its image tokens) reaches it is an "
        "error, never silently cut.",
    )
    train_file: str | None = Field(
        None,
        description="Pairs trained on (null: {data_dir}/bvpi_dpo_{train_split}.jsonl); images "
        "resolve against data.image_root like the SFT rows.",
    )
    eval_file: str | None = Field(
        None,
        description="Held-out pairs for eval loss, reward margins and preference accuracy "
        "(null: {data_dir}/bvpi_dpo_{eval_split}.jsonl when data.eval_split is set).",
    )

    @model_validator(mode="after")
    def _weights_match(self) -> PreferenceSection:
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            raise ValueError(
                f"loss_weights has {len(self.loss_weights)} values for {len(self.loss_type)} "
                "loss_type entries"
            )
        return self


class TrainConfig(_Section):
    """The whole recipe. `stage` (sft or dpo), then sections: model, finetune, data, train,
    generation_eval, dpo, family_options."""

    stage: Literal["sft", "dpo"] = Field(
        "sft",
        description="sft: supervised fine-tuning on the task's answers; dpo: preference tuning "
        "of an SFT run (model.name_or_path) on chosen / rejected pairs (the dpo section).",
    )
    model: ModelSection = Field(default_factory=ModelSection)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    data: DataSection = Field(default_factory=DataSection)
    train: TrainSection = Field(default_factory=TrainSection)
    generation_eval: GenerationEvalSection = Field(default_factory=GenerationEvalSection)
    dpo: PreferenceSection = Field(default_factory=PreferenceSection)
    family_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Family-specific settings, validated by the family's `options_model`.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        from roadscene.models import get_family

        family = get_family(self.model.family)
        if self.finetune.model_fields_set and self.finetune.method not in family.finetune_methods:
            raise ValueError(
                f"finetune.method '{self.finetune.method}' is not one the {family.name} family "
                f"trains with; allowed: {', '.join(family.finetune_methods)}"
            )
        self._check_stage(family)
        if family.options_model is None:
            if self.family_options:
                raise ValueError(
                    f"family '{self.model.family}' takes no family_options; got "
                    f"{', '.join(self.family_options)}"
                )
        else:
            try:
                validated = family.options_model.model_validate(self.family_options)
            except ValidationError as err:
                raise ValueError(_format_validation_error(err, "family_options")) from None
            # Store the resolved options (defaults filled in) so the saved config is complete.
            object.__setattr__(self, "family_options", validated.model_dump(mode="json"))
        data = self.data
        if data.augment.active and data.cache_encoded:
            raise ValueError(
                "data.cache_encoded keeps the first pixels an item had; it cannot be combined "
                "with data.augment"
            )
        if data.mix is not None and data.train_file is not None:
            raise ValueError("give data.mix or data.train_file, not both")
        if (
            data.mix is not None
            and data.mix.few_shot_share > 0
            and not family.supports_demonstrations
        ):
            raise ValueError(
                f"data.mix.few_shot_share needs a family that takes in-context demonstrations; "
                f"'{self.model.family}' does not"
            )
        if (
            self.generation_eval.enabled
            and self.generation_eval.keep_best
            and not self.data.eval_split
            and not self.data.eval_file
        ):
            raise ValueError(
                "generation_eval.keep_best needs data.eval_split; set generation_eval.enabled=false "
                "or give an eval split"
            )
        return self

    def _check_stage(self, family: Any) -> None:
        if self.stage == "sft":
            default = PreferenceSection()
            changed = sorted(
                k for k in self.dpo.model_fields if getattr(self.dpo, k) != getattr(default, k)
            )
            if changed:
                raise ValueError(f"dpo.{', dpo.'.join(changed)} only applies with stage: dpo")
            return
        if family.preference_limitation:
            raise ValueError(
                f"stage dpo is not available for the {family.name} family: "
                f"{family.preference_limitation}"
            )
        if self.data.task != "bvpi":
            raise ValueError(
                f"stage dpo trains on bvpi preference pairs; data.task is '{self.data.task}'"
            )
        # The supervised stage's training inputs: the preference stage would silently ignore them.
        sft_only = [
            name
            for name, given in (
                ("data.train_file", self.data.train_file is not None),
                ("data.mix", self.data.mix is not None),
                ("data.augment", self.data.augment.active),
                ("train.motion_loss_weight", self.train.motion_loss_weight != 1.0),
            )
            if given
        ]
        if sft_only:
            raise ValueError(
                f"{', '.join(sft_only)} only applies with stage: sft; the dpo stage trains on "
                "dpo.train_file pairs"
            )


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "literal_error":
        message = f"got {excerpt(first['input'])}; {message}"
    elif first["type"] != "missing" and "got " not in message:
        # the value, capped: a hostile (or alias-expanded) value must not flood the message
        message = f"{message} (got {excerpt(first.get('input'))})"
    return f"{source}: '{where}': {message}" if where else f"{source}: {message}"


#: Top-level fields of a recipe that are plain values, not sections (`stage: dpo`).
_TOP_LEVEL_FIELDS = ("stage",)
_SECTIONS = tuple(name for name in TrainConfig.model_fields if name not in _TOP_LEVEL_FIELDS)


def _allowed_keys(section: str | None) -> list[str]:
    if section is None:
        return list(TrainConfig.model_fields)
    annotation = TrainConfig.model_fields[section].annotation
    return list(annotation.model_fields)  # type: ignore[union-attr]


def parse_override(item: str) -> tuple[list[str], Any]:
    """`train.learning_rate=1e-4` -> (["train", "learning_rate"], 1e-4); values parse as YAML."""
    if "=" not in item:
        raise InputError(f"override '{item}' is not key=value (e.g. train.learning_rate=1e-4)")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    top_level = len(parts) == 1 and parts[0] in _TOP_LEVEL_FIELDS
    if not top_level and (len(parts) != 2 or parts[0] not in _SECTIONS):
        raise InputError(
            f"override key '{key}' must be section.field with section one of "
            f"{', '.join(_SECTIONS)} (or one of {', '.join(_TOP_LEVEL_FIELDS)})"
        )
    if not top_level:
        section, name = parts
        if section != "family_options" and name not in _allowed_keys(section):
            raise InputError(
                f"unknown key '{key}'; keys of '{section}': {', '.join(_allowed_keys(section))}"
            )
    try:
        value = loads_yaml(raw) if raw.strip() else ""
    except InputError as err:
        if err.reason.startswith("refused"):
            raise InputError(f"--set {key}: {err.reason}") from None
        value = raw  # not YAML: the text itself
    return parts, value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML recipe at `path`, then `section.key=value` overrides."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        loaded = loads_yaml(read_text(path), path=path)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise InputError("a recipe must be a mapping of sections", path=path)
        for section in loaded:
            if section not in TrainConfig.model_fields:
                raise InputError(
                    f"unknown section {excerpt(section)}; allowed: {', '.join(_SECTIONS)} (and "
                    f"the top-level {', '.join(_TOP_LEVEL_FIELDS)})",
                    path=path,
                )
        raw = loaded
    for item in overrides or []:
        parts, value = parse_override(item)
        if len(parts) == 1:
            raw[parts[0]] = value
            continue
        section, name = parts
        raw.setdefault(section, {})
        if raw[section] is None:
            raw[section] = {}
        if not isinstance(raw[section], dict):
            raise InputError(f"section '{section}' is not a mapping, so --set {item} cannot apply")
        raw[section][name] = value
    if overrides:
        source += " + --set"
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        raise InputError(_format_validation_error(err, source)) from None


def save_config(config: TrainConfig, folder: str | Path) -> Path:
    """Write the resolved config as YAML into `folder` (atomically)."""
    import yaml

    from roadscene.io import atomic_write

    path = Path(folder) / CONFIG_FILENAME
    with atomic_write(path) as handle:
        yaml.safe_dump(config.model_dump(mode="json"), handle, sort_keys=False)
    return path


def read_saved_config(folder: str | Path) -> TrainConfig | None:
    """The resolved config saved in a run or checkpoint folder, or None if there is none."""
    path = Path(folder) / CONFIG_FILENAME
    return load_config(path) if path.is_file() else None


def model_start(name_or_path: str | Path) -> tuple[str, Path | None]:
    """(base model, adapter folder or None) of a `model.name_or_path` / `--model`: a training
    output folder holding a PEFT adapter is that adapter on its base model; anything else (a
    hub id, a full model folder) is the model itself."""
    folder = Path(name_or_path)
    if not (folder / "adapter_config.json").is_file():
        return str(name_or_path), None
    return adapter_base(folder), folder


def adapter_base(folder: str | Path) -> str:
    """The base model an adapter folder was trained on: its saved config's model (followed
    through earlier adapter runs it continued, e.g. SFT before DPO), else the adapter config's
    `base_model_name_or_path`."""
    folder = Path(folder)
    seen = {folder.resolve()}
    while True:
        saved = read_saved_config(folder)
        if saved is None:
            break
        start = Path(saved.model.name_or_path)
        if not (start / "adapter_config.json").is_file():
            return saved.model.name_or_path
        if start.resolve() in seen:
            raise InputError("adapter runs name each other as their base", path=folder)
        seen.add(start.resolve())
        folder = start
    try:
        config = read_json(folder / "adapter_config.json")
    except InputError as err:
        raise InputError(f"adapter_config.json: {err.reason}", path=folder) from None
    base = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    if not isinstance(base, str) or not base:
        raise InputError(
            "adapter config names no base model; pass --model BASE --adapter DIR", path=folder
        )
    return base


def save_prompts(folder: str | Path, task: str, prompts: list[str]) -> Path:
    """Write the prompts a model is trained on (most frequent first, with counts) into `folder`,
    so prediction without a prompt asks the question the model learned to answer."""
    from collections import Counter

    from roadscene.io import write_json

    counts = Counter(prompts).most_common(MAX_SAVED_PROMPTS)
    path = Path(folder) / PROMPTS_FILENAME
    write_json(path, {"task": task, "prompts": [{"prompt": p, "count": n} for p, n in counts]})
    return path


def read_prompts(folder: str | Path) -> list[str]:
    """The prompts saved with a trained model, most frequent first (empty when none saved)."""
    path = Path(folder) / PROMPTS_FILENAME
    if not path.is_file():
        return []
    saved = read_json(path)
    try:
        return [str(item["prompt"]) for item in saved["prompts"]]
    except (KeyError, TypeError) as err:
        raise InputError(f"unreadable prompts file ({type(err).__name__})", path=path) from None
