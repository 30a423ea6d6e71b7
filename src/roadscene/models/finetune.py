"""Preparing a loaded model for fine-tuning: PEFT LoRA adapters, QLoRA (4-bit NF4 base + adapters)
or full fine-tuning, as the recipe's `finetune` section says."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from roadscene.errors import InputError

if TYPE_CHECKING:
    from roadscene.models.base import ModelFamily


class FinetuneSection(BaseModel):
    """How a model is fine-tuned (the recipe's `finetune` section)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    method: Literal["lora", "qlora", "full"] = Field(
        "lora",
        description="lora: adapters on a frozen model; qlora: 4-bit NF4 base + adapters; "
        "full: every weight trains.",
    )
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | str | None = Field(
        None,
        description="LoRA targets: leaf names (e.g. [q_proj, v_proj]), 'all-linear', or null for "
        "the family default (SmolVLM, Qwen3-VL: the language model's q_proj/v_proj; Flamingo: "
        "the gated cross-attention).",
    )
    text_only: bool = Field(
        True, description="Restrict a list of target names to the language model."
    )
    freeze_vision: bool = Field(
        False, description="With method=full: keep the vision tower frozen."
    )


def prepare_model(
    model: Any,
    finetune: FinetuneSection,
    family: ModelFamily,
    *,
    gradient_checkpointing: bool = False,
    adapter: str | Path | None = None,
) -> Any:
    """Attach LoRA adapters (lora / qlora) or leave every weight trainable (full).

    `adapter`: a saved PEFT adapter folder that continues training (its own LoRA settings
    apply) instead of new adapters.
    """
    if finetune.method == "full":
        if adapter is not None:
            raise InputError(
                "finetune.method=full cannot continue a LoRA adapter; use lora or qlora (the "
                "adapter keeps training), or start from a full model",
                path=adapter,
            )
        vision = family.vision_module_name
        if finetune.freeze_vision and vision is None:
            raise InputError(
                f"finetune.freeze_vision: the {family.name} family names no vision encoder to "
                "freeze",
                field="finetune.freeze_vision",
            )
        for name, param in model.named_parameters():
            frozen = finetune.freeze_vision and (name + ".").startswith(f"{vision}.")
            param.requires_grad_(not frozen)
        return model
    from roadscene.models.loading import quiet_optional_kernel_notices

    quiet_optional_kernel_notices()
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if finetune.method == "qlora":
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    if adapter is not None:
        from roadscene.models.loading import loading_errors

        with loading_errors(adapter):
            return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    lora = LoraConfig(
        r=finetune.lora_r,
        lora_alpha=finetune.lora_alpha,
        lora_dropout=finetune.lora_dropout,
        target_modules=family.lora_targets(finetune.target_modules, text_only=finetune.text_only),
        modules_to_save=list(family.lora_modules_to_save) or None,
        bias="none",
    )
    return get_peft_model(model, lora)


def bnb_4bit_config(skip_modules: list[str] | None = None) -> Any:
    """QLoRA quantisation: 4-bit NF4 weights, double quantisation, bf16 compute.
    `skip_modules`: module names (prefixes, or regexes anchored at the start) kept unquantised."""
    import torch
    from transformers import BitsAndBytesConfig

    from roadscene.models.base import cuda_half_dtype

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise InputError(
            "QLoRA needs bitsandbytes, which is not installed: pip install 'roadscene[qlora]'",
            field="finetune.method",
        ) from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=cuda_half_dtype() if torch.cuda.is_available() else torch.bfloat16,
        llm_int8_skip_modules=skip_modules,
    )
