"""What `roadscene train` reads from the launcher that started it (`torchrun`, `accelerate
launch`, or none), so the same command trains on one process, several GPUs or several nodes.

The launcher sets environment variables: torchrun and accelerate's multi-process launcher set
RANK / WORLD_SIZE / LOCAL_RANK; `accelerate launch` with an FSDP or DeepSpeed config adds
ACCELERATE_USE_FSDP / ACCELERATE_USE_DEEPSPEED and that backend's settings, which the HF Trainer
picks up. Three things are ours: every process loads its model onto its own GPU, FSDP wraps the
family's transformer layers (not the model's `_no_split_modules` guess), and a launch that
would silently train on one process stops with the command that does what was asked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping

from roadscene.errors import InputError

# Variables a multi-process launcher (torchrun, accelerate's multi-process launcher, MPI) sets.
_RANK_VARIABLES = ("RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "").strip().lower() in ("1", "true", "yes")


def check_launch(environ: Mapping[str, str] | None = None) -> None:
    """Stop a launch that asked for several processes but got one.

    `accelerate launch --cpu --num_processes N` starts ONE process unless it runs under MPI
    (`--mpirun_hostfile`): it sets MASTER_ADDR for the group it means but no rank, and the run
    would train alone with a different batch and loss. Multi-process CPU training is
    `torchrun --nproc_per_node N` or `accelerate launch --config_file configs/accelerate/ddp.yaml
    --num_processes N` (on a machine without GPUs its processes form a gloo group).
    """
    environ = os.environ if environ is None else environ
    if (
        _flag(environ, "ACCELERATE_USE_CPU")
        and "MASTER_ADDR" in environ
        and not any(name in environ for name in _RANK_VARIABLES)
    ):
        raise InputError(
            "accelerate launch --cpu runs ONE process unless it runs under MPI; for N CPU "
            "processes use: accelerate launch --config_file configs/accelerate/ddp.yaml "
            "--num_processes N -m roadscene train ... (or torchrun --nproc_per_node N -m "
            "roadscene train ...)"
        )


def process_device(environ: Mapping[str, str] | None = None) -> str | None:
    """This process's GPU under a multi-process launcher (`cuda:LOCAL_RANK`), so that every
    rank loads its model (a 4-bit one cannot move afterwards) onto its own GPU; None otherwise
    (the family's default device)."""
    import torch

    environ = os.environ if environ is None else environ
    local_rank = environ.get("LOCAL_RANK")
    if local_rank is None or not torch.cuda.is_available():
        return None
    return f"cuda:{int(local_rank)}"


def use_family_fsdp_layers(
    wrap_classes: tuple[str, ...], environ: MutableMapping[str, str] | None = None
) -> None:
    """Under `accelerate launch` with an FSDP config that names no layer classes, wrap the
    family's (`ModelFamily.fsdp_wrap_classes`): accelerate would otherwise take the model's
    `_no_split_modules`, which for some models names no decoder layer at all."""
    environ = os.environ if environ is None else environ
    if _flag(environ, "ACCELERATE_USE_FSDP") and wrap_classes:
        environ.setdefault("FSDP_TRANSFORMER_CLS_TO_WRAP", ",".join(wrap_classes))
