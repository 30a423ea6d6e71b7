"""The real-size benchmark (bench/gpu.py): stored architectures, image-token counts, FLOP
counting, and a CPU run of every measurement at tiny scale."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from roadscene.bench.gpu import evaluate_goals, parameter_summary
from roadscene.bench.subjects import build_subject
from roadscene.errors import InputError
from roadscene.models import smolvlm
from roadscene.models.arch import list_archs, load_arch
from roadscene.models.flamingo import costs as flamingo_costs

REPO = Path(__file__).resolve().parents[2]


def test_arch_registry_lists_files_and_rejects_unknown_names() -> None:
    assert {"smolvlm2-2.2b", "openflamingo-3b", "smolvlm2-tiny", "openflamingo-tiny"} <= set(
        list_archs()
    )
    first = load_arch("smolvlm2-2.2b")
    first.model["text_config"]["hidden_size"] = 1  # a copy: the registry is not mutated
    assert load_arch("smolvlm2-2.2b").model["text_config"]["hidden_size"] == 2048
    with pytest.raises(InputError, match="valid: .*smolvlm2-2.2b"):
        load_arch("smolvlm3")


def test_smolvlm2_real_size_parameters_match_the_published_architecture() -> None:
    """Counted on the meta device (no memory) against a count written out from the config
    values of the published SmolVLM2-2.2B-Instruct config.json (Llama text 2048/8192/24, SigLIP
    1152/4304/27, scale 3, vocab 49280)."""
    parts = parameter_summary("smolvlm2-2.2b")["parts"]
    hidden, inter, layers, vocab = 2048, 8192, 24, 49280
    text_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden  # no biases, 2 RMSNorms
    assert parts["text_model"] == vocab * hidden + layers * text_layer + hidden
    assert parts["lm_head"] == vocab * hidden  # untied
    v_hidden, v_inter, v_layers, patches = 1152, 4304, 27, (384 // 14) ** 2
    vision_layer = (
        4 * (v_hidden * v_hidden + v_hidden)
        + (v_hidden * v_inter + v_inter)
        + (v_inter * v_hidden + v_hidden)
        + 2 * 2 * v_hidden
    )
    embeddings = 3 * 14 * 14 * v_hidden + v_hidden + patches * v_hidden
    assert parts["vision_model"] == embeddings + v_layers * vision_layer + 2 * v_hidden
    assert parts["connector"] == v_hidden * 9 * hidden
    total = sum(parts.values())
    assert 2.2e9 < total < 2.3e9  # "SmolVLM2-2.2B"


def test_qwen3vl_2b_real_size_parameters_match_the_published_architecture() -> None:
    """Counted on the meta device against a count written out from the architecture (Qwen3 text
    2048 wide, 28 layers, 16 query / 8 key-value heads of 128, MLP 6144, vocabulary 151936,
    head tied to the embedding; ViT 1024 x 24 with 2 x 2 merging)."""
    summary = parameter_summary("qwen3-vl-2b")
    parts = summary["parts"]
    hidden, inter, layers, vocab, head = 2048, 6144, 28, 151936, 128
    attention = 2 * hidden * 16 * head + 2 * hidden * 8 * head + 2 * head  # q, o, k, v + q/k norms
    text_layer = attention + 3 * hidden * inter + 2 * hidden
    assert parts["language_model"] == vocab * hidden + layers * text_layer + hidden
    assert parts["lm_head"] == 0  # tied: the embedding is counted once
    assert 0.40e9 < parts["visual"] < 0.41e9
    assert 2.1e9 < summary["total"] < 2.15e9  # "Qwen3-VL-2B"


def test_openflamingo3b_real_size_trainable_parameters_match_flamingo_md() -> None:
    """Trainable set of the recipe = the checkpoint table of docs/flamingo.md (perceiver, 24 gated
    cross-attention blocks, the 50280 x 2048 embedding)."""
    summary = parameter_summary("openflamingo-3b")
    perceiver_layer = (
        4 * 1024 + 512 * 1024 + 1024 * 1024 + 1024 * 512 + 2 * 1024 + 4096 * 1024 + 1024 * 4096
    )
    perceiver = 64 * 1024 + 6 * perceiver_layer + 2 * 1024
    cross_layer = 2 + 2 * 2048 + 512 * 2048 + 1024 * 1024 + 2048 * 512 + 2 * 2048 + 2 * 8192 * 2048
    embedding = 50280 * 2048
    assert summary["parts"]["perceiver"] == perceiver
    assert summary["trainable_recipe"] == perceiver + 24 * cross_layer + embedding
    assert 1.04e9 < summary["trainable_recipe"] < 1.06e9  # "~1.05 B trainable"
    assert summary["trainable_effective"] == perceiver + 24 * cross_layer + 2 * 2048
    # CLIP ViT-L/14 vision tower + MPT-1B (1.31 B with 50280 rows) + perceiver + cross-attention
    assert summary["parts"]["vision_encoder"] == 303_179_776
    mpt_block = 6144 * 2048 + 2048 * 2048 + 2 * 8192 * 2048 + 4 * 2048
    mpt = embedding + 24 * mpt_block + 2048
    assert summary["total"] == 303_179_776 + perceiver + mpt + 24 * cross_layer


@pytest.fixture(scope="module")
def smolvlm_base_processor(tiny_smolvlm_dir: Path):
    from roadscene.models import get_family

    return get_family("smolvlm").load(tiny_smolvlm_dir, device="cpu").processor


@pytest.mark.parametrize(
    ("arch_name", "longest_edge", "tiles", "image_tokens"),
    [
        ("smolvlm2-2.2b", None, 17, 1377),  # 512 px upscaled to 1536: 4x4 tiles + global
        ("smolvlm2-2.2b", 512, 5, 405),  # 512 px -> 768 (whole tiles): 2x2 + global
        ("smolvlm2-tiny", None, 17, 68),  # the tiny config keeps the real tiling
        ("smolvlm2-tiny", 64, 5, 20),
    ],
)
def test_smolvlm_processor_settings_give_the_expected_image_tokens(
    smolvlm_base_processor, arch_name: str, longest_edge: int | None, tiles: int, image_tokens: int
) -> None:
    """transformers' SmolVLM image processor (no weights) with the stored settings, on a
    512 x 512 image, through the family's `encode`."""
    from roadscene.bench.subjects import bench_image
    from roadscene.data.examples import VisionTextExample
    from roadscene.models import get_family

    arch = load_arch(arch_name)
    processor = smolvlm._arch_processor(smolvlm_base_processor, arch, longest_edge)
    example = VisionTextExample(images=[bench_image(512)], prompt="Describe this road scene.")
    features = get_family("smolvlm").encode(processor, example)
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert features["pixel_values"].shape[0] == tiles
    assert int((features["input_ids"] == image_id).sum()) == image_tokens


@pytest.mark.parametrize("arch_name", ["smolvlm2-tiny", "openflamingo-tiny"])
def test_prefill_flop_formula_matches_torch_flop_counter(arch_name: str, tmp_path: Path) -> None:
    """The analytic count (weights x tokens + attention) equals what torch's FlopCounterMode
    sees in a real forward (eager attention, so attention matmuls are visible to it)."""
    from torch.utils.flop_counter import FlopCounterMode

    subject = build_subject(
        load_arch(arch_name), device=torch.device("cpu"), dtype=torch.float32, workdir=tmp_path
    )
    [example] = subject.examples(1, prompt="Describe this road scene.")
    features = subject.family.encode(subject.processor, example)
    batch = subject.family.collate(subject.processor, [features], padding_side="left")
    shape = subject.sequence_shape(features)
    model = subject.model
    if arch_name.startswith("smolvlm"):
        model.set_attn_implementation("eager")
        with FlopCounterMode(display=False) as counter:
            model(**batch, logits_to_keep=1, use_cache=False)
        expected = smolvlm.prefill_flops(model, shape, causal=False, logits_tokens=1)
    else:
        model.vision_encoder.set_attn_implementation("eager")
        with FlopCounterMode(display=False) as counter:
            model(**batch, use_cache=False)  # Flamingo computes logits for every position
        expected = flamingo_costs.prefill_flops(
            model, shape, causal=False, logits_tokens=shape.tokens
        )
    assert sum(expected.values()) == pytest.approx(counter.get_total_flops(), rel=0.01)


def test_decode_bytes_count_weights_once_and_the_kv_cache_per_row() -> None:
    from roadscene.bench.subjects import meta_model

    model = meta_model(load_arch("smolvlm2-2.2b"), dtype=torch.bfloat16)
    one = smolvlm.decode_step(model, batch=1, context=0)
    # text layers + final norm + lm_head in bf16; the embedding table is gathered, not read
    weights = 2 * (model.model.text_model.num_parameters() - 49280 * 2048 + 49280 * 2048)
    assert one["bytes"] == weights + 2 * 2048
    eight = smolvlm.decode_step(model, batch=8, context=1000)
    kv_per_row = 2 * 24 * 32 * 64 * 1000 * 2  # K and V, 24 layers, 32 kv heads x 64, bf16
    assert eight["bytes"] == weights + 8 * kv_per_row + 8 * 2 * 2048


def test_goals_are_judged_only_on_a_gpu_run() -> None:
    def document(device_type: str, total_ms: float) -> dict:
        batch1 = {
            "total_ms": total_ms,
            "peak_memory_bytes": 5_000_000_000,
            "x_bound": {"decode": 1.5},
        }
        default = {"batch1": batch1, "batched": [{"images_per_s": 20.0}, {"images_per_s": 30.0}]}
        return {
            "device": {"type": device_type},
            "models": {"smolvlm2-2.2b": {"inference": {"default": default}}},
        }

    goals = evaluate_goals(document("cuda", 450.0))
    assert [goal["met"] for goal in goals] == [False, True, True, True]
    assert goals[0]["measured"] == pytest.approx(0.45)
    assert goals[2]["measured"] == pytest.approx(5.0)
    assert [goal["met"] for goal in evaluate_goals(document("cpu", 300.0))] == [None] * 4


def _numbers(node, path="$"):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _numbers(value, f"{path}[{index}]")
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def test_bench_tiny_cpu_run_writes_the_full_document(tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "gpu.py"),
            "--scale",
            "tiny",
            "--device",
            "cpu",
            "--new-tokens",
            "4",
            "--batch-size",
            "2",
            "--train-steps",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "smolvlm2-tiny: batch 1" in result.stderr  # the readable table
    doc = json.loads(out.read_text())
    assert doc["schema"] == "roadscene.bench.gpu/1"
    assert doc["device"]["type"] == "cpu"
    assert doc["device"]["bandwidth_GBps"] > 0 and doc["device"]["matmul_TFLOPs"] > 0
    # the default run: every registered family's tiny architecture
    assert set(doc["models"]) == {"smolvlm2-tiny", "openflamingo-tiny", "qwen3-vl-tiny"}

    smol = doc["models"]["smolvlm2-tiny"]
    inference = smol["inference"]
    assert (inference["default"]["tiles"], inference["default"]["image_tokens"]) == (17, 68)
    assert (inference["reduced"]["tiles"], inference["reduced"]["image_tokens"]) == (5, 20)
    assert inference["prefill_difference"]["image_tokens"] == [68, 20]
    for model in doc["models"].values():
        batch1 = model["inference"]["default"]["batch1"]
        assert batch1["new_tokens"] == 4
        assert batch1["peak_memory_bytes"] is None  # not measured on the CPU
        for key in ("encode_prefill", "decode", "total"):
            assert batch1["x_bound"][key] > 0
        assert [run["batch_size"] for run in model["inference"]["default"]["batched"]] == [2]
        assert model["inference"]["default"]["batched"][0]["images_per_s"] > 0
        structured = model["inference"]["structured"]
        assert structured["ratio"] is not None, structured.get("reason")
        assert all(1 <= run["tokens"] <= 4 for run in structured["runs"])
        training = model["training"]
        assert training["batch_size"] == 4
        assert [run["gradient_checkpointing"] for run in training["runs"]] == [False, True]
        for run in training["runs"]:  # both families support gradient checkpointing
            assert run["samples_per_s"] > 0, run.get("reason")
            assert run["tokens_per_s"] > run["samples_per_s"]
    # the clip case: 8 frames through each family's video path, beside one image
    for name, model in doc["models"].items():
        clip = model["inference"]["clip"]
        assert clip["frames"] == 8, name
        assert clip["batch1"]["total_ms"] > 0
        assert clip["vs_image"]["image_tokens"] == model["inference"]["default"]["image_tokens"]
    assert inference["clip"]["image_tokens_per_frame"] == 4  # one 48 px tile per frame
    # LoRA: only adapter weights train; Flamingo: the recipe's set
    assert 0 < smol["training"]["parameters"]["trainable"] < smol["parameters"]["total"] / 10

    numbers = list(_numbers(doc))
    assert numbers, "no numbers in the document"
    for path, value in numbers:
        assert math.isfinite(value), path
        # times, counts and bounds are never negative; a difference of two timings can be
        if not path.startswith("$.settings") and not path.endswith(".saved_ms"):
            assert value >= 0, path
    assert [goal["met"] for goal in doc["goals"]] == [None] * 4  # goals are for the GPU run


def test_real_scale_without_a_gpu_is_a_clear_input_error() -> None:
    from roadscene.bench.gpu import GpuBenchSettings, run_gpu_bench

    with pytest.raises(InputError, match="--scale real needs a CUDA GPU"):
        run_gpu_bench(GpuBenchSettings(scale="real", device="cpu"))


def test_bench_bad_option_names_it_and_exits_2() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu.py"), "--arch", "smolvlm3"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("error: field '--arch': unknown architecture")
    )
    assert "smolvlm2-2.2b" in result.stderr


def test_clip_tokens_at_the_real_processor_settings() -> None:
    """bench/clip_tokens.py: a clip's image tokens beside one image's at real size (processors
    only; the models stand on the meta device)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "clip_tokens.py"), "--frames", "4", "8"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["arch"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == {"smolvlm2-2.2b", "qwen3-vl-2b", "openflamingo-3b"}
    smol = rows["smolvlm2-2.2b"]
    # one default-processor image: 17 tiles of 81 tokens; a clip frame: one 384 px tile
    assert smol["image"]["image_tokens"] == 1377
    assert (smol["clip_4"]["image_tokens"], smol["clip_8"]["image_tokens"]) == (324, 648)
    qwen = rows["qwen3-vl-2b"]
    # 512 px: 32 x 32 patches of 16 px merged 2 x 2; video frames pair up in time
    assert qwen["image"]["image_tokens"] == 256
    assert (qwen["clip_4"]["image_tokens"], qwen["clip_8"]["image_tokens"]) == (512, 1024)
    flamingo = rows["openflamingo-3b"]
    assert flamingo["clip_8"]["image_tokens"] == 1  # one <image> for the clip
    assert flamingo["clip_8"]["cross_attended_latents"] == 8 * 64
