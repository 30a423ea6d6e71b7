"""What `roadscene train` reads from its launcher: a launch that would silently train on one
process stops, and an FSDP launch wraps the family's layers."""

from __future__ import annotations

import pytest

from roadscene.errors import InputError
from roadscene.models import get_family
from roadscene.train.launch import check_launch, process_device, use_family_fsdp_layers

# What `accelerate launch --cpu --num_processes 2 script` gives its ONE process (accelerate 1.15).
ACCELERATE_CPU_TWO = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}  # fmt: skip


def test_accelerate_cpu_launch_of_several_processes_stops_with_the_right_command() -> None:
    with pytest.raises(InputError, match="configs/accelerate/ddp.yaml --num_processes N"):
        check_launch(ACCELERATE_CPU_TWO)
    # one CPU process asked for, torchrun / accelerate's multi-process launcher, MPI: fine
    check_launch({"ACCELERATE_USE_CPU": "True"})
    check_launch({**ACCELERATE_CPU_TWO, "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    check_launch({**ACCELERATE_CPU_TWO, "OMPI_COMM_WORLD_SIZE": "2"})
    check_launch({})


def test_each_process_loads_onto_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert process_device({"LOCAL_RANK": "3"}) == "cuda:3"
    assert process_device({}) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert process_device({"LOCAL_RANK": "1"}) is None  # CPU processes


def test_fsdp_launch_wraps_the_family_layers_unless_the_config_names_some() -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin

    classes = get_family("smolvlm").fsdp_wrap_classes
    environ = {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2",
               "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP"}  # fmt: skip
    use_family_fsdp_layers(classes, environ)
    assert environ["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "SmolVLMEncoderLayer,LlamaDecoderLayer"
    # accelerate builds its plugin from these variables in the launched process
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environ.items():
            patch.setenv(name, value)
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.transformer_cls_names_to_wrap == list(classes)

    named = {"ACCELERATE_USE_FSDP": "true", "FSDP_TRANSFORMER_CLS_TO_WRAP": "MyLayer"}
    use_family_fsdp_layers(classes, named)
    assert named["FSDP_TRANSFORMER_CLS_TO_WRAP"] == "MyLayer"
    not_fsdp: dict[str, str] = {}
    use_family_fsdp_layers(classes, not_fsdp)
    assert not_fsdp == {}
