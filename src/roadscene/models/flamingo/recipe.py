"""The Flamingo training recipe's own settings (the `flamingo:` section of a training config).

Kept free of torch imports: `roadscene.train.config` imports it to validate recipes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

#: Field labels of the structured answer that text dropout may remove.
FIELD_LABELS = ("Sidewalk:", "Road:", "RoadVsSidewalk:", "Nearby:", "Far:", "Context:")


class FlamingoTrainingSection(BaseModel):
    """OpenFlamingo fine-tuning: the perceiver, the gated cross-attention layers and the rows of
    `<|endofchunk|>` and `<image>` in the embedding train; everything else stays frozen."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    gate_lr_multiplier: float = Field(
        50.0, gt=0, description="Learning rate of the tanh gates = learning_rate × this."
    )
    gate_init: float | None = Field(
        None,
        description="Set every gate to this value before training (null: keep the model's "
        "gates, e.g. the published ones; the original pre-training started at 0).",
    )
    gate_regularization: float = Field(
        0.2,
        ge=0,
        description="Adds this × mean over all gates of tanh(gate)² to the loss (keeps the "
        "visual branch from swamping the language model early on).",
    )
    text_dropout: float = Field(
        0.3,
        ge=0,
        lt=1,
        description="Probability of removing each field label (Sidewalk:, Road:, ...) from a "
        "training answer, independently per label and per step.",
    )
    cross_attention_weight_decay: float = Field(
        0.1,
        ge=0,
        description="AdamW weight decay on the cross-attention weight matrices only (not gates, "
        "LayerNorms, perceiver or embedding rows); train.weight_decay is not used.",
    )
