"""Flamingo with PEFT: LoRA adapters on the gated cross-attention (optionally on the frozen
MosaicGPT's attention too), the perceiver training fully beside them, and QLoRA's 4-bit
MosaicGPT.

- Targets: full-match regexes over module names, so the vision tower, the perceiver and (unless
  asked for) the language model's own layers never get adapters.
- The perceiver is PEFT `modules_to_save`: a trainable copy saved inside the adapter, the
  original kept for the disabled adapter.
- The tanh gates are bare scalars, which PEFT cannot hold; they keep the model's values. With
  every gate at 0 (a fresh cross-attention) no gradient reaches the adapters or the perceiver,
  so such a model is refused: train it with the recipe first, or start from published weights.
- QLoRA quantises only MosaicGPT's linear layers (frozen under any method); the CLIP tower, the
  perceiver and the cross-attention stay in the compute dtype.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from roadscene.errors import InputError

#: Default LoRA targets: the cross-attention's q / kv / out projections and its feed-forward.
CROSS_ATTENTION_TARGETS = (
    r"lang_encoder\.transformer\.blocks\.\d+\.gated_cross_attn_layer\."
    r"(attn\.(to_q|to_kv|to_out)|ff\.(1|3))"
)
#: Module names kept unquantised by QLoRA (prefixes, or regexes anchored at the start).
UNQUANTISED_MODULES = ["vision_encoder", "perceiver", r".*gated_cross_attn_layer"]
GATE_NAMES = ("attn_gate", "ff_gate")


def lora_targets(names: Sequence[str] | str | None) -> str:
    """PEFT `target_modules` for leaf names inside the language model's blocks, e.g.
    `[to_q, to_kv, to_out, ff.1, ff.3]` (the cross-attention) plus `[Wqkv, out_proj]` (the
    frozen MosaicGPT's attention). None: the cross-attention. A string is a full-match regex."""
    if names is None:
        return CROSS_ATTENTION_TARGETS
    if isinstance(names, str):
        if names == "all-linear":
            raise InputError(
                "finetune.target_modules=all-linear would put adapters on the CLIP tower and the "
                "perceiver (which trains fully); list leaf names such as [to_q, to_kv, to_out, "
                "Wqkv, out_proj]",
                field="finetune.target_modules",
            )
        return names
    alternatives = "|".join(re.escape(name) for name in names)
    return rf"lang_encoder\.transformer\.blocks\.\d+\.(.*\.)?({alternatives})"


def quantization_config() -> Any:
    """4-bit NF4 for MosaicGPT's linear layers only (see the module docstring)."""
    from roadscene.models.finetune import bnb_4bit_config

    return bnb_4bit_config(skip_modules=list(UNQUANTISED_MODULES))


def check_gates_open(model: Any) -> None:
    """Refuse a model whose cross-attention gates are all 0: tanh(0) = 0 blocks every gradient
    to the adapters and the perceiver while the gates stay frozen."""
    gates = [param for name, param in model.named_parameters() if name.endswith(GATE_NAMES)]
    if gates and all(float(gate.detach().abs().max()) == 0.0 for gate in gates):
        raise InputError(
            "every cross-attention gate of this Flamingo model is 0, so LoRA adapters and the "
            "perceiver would get no gradient (the gates are scalars PEFT cannot train); train it "
            "with the published recipe first (no finetune section) or start from published "
            "weights",
            field="finetune.method",
        )
