"""`roadscene predict --engine ray` on a private local Ray instance (2 CPUs, 2 workers, the tiny
SmolVLM, 62 images and 2 clips): the same bytes as a local run, resuming an interrupted run, with
a worker killed mid-run. One Ray instance for the module, shut down with nothing left behind.

Each Ray run costs 10-25 s of worker start-up on a busy 2-core box, so one run checks all three."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

import roadscene  # noqa: E402
from roadscene.data.clips import ClipSettings  # noqa: E402
from roadscene.predict import ModelCard, PredictSettings, predict_file  # noqa: E402
from roadscene.predict.distributed import KillWorkerOnce, RaySettings, predict_file_ray  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROWS = 64
SETTINGS = PredictSettings(batch_size=4, max_new_tokens=24, clip=ClipSettings(frames=3))


@pytest.fixture(scope="module")
def local_ray():
    """A private Ray instance (never a running cluster) with 2 CPUs; its workers import this
    checkout's roadscene. Every process it started is gone after the module."""
    import psutil

    environ = pytest.MonkeyPatch()
    environ.setenv("RAY_AUTH_MODE", "disabled")  # no token file written to ~/.ray
    # Unix socket paths must stay under ~107 characters: pytest's tmp_path is too long.
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    source = str(Path(roadscene.__file__).resolve().parents[1])
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=temp_dir,
        runtime_env={"env_vars": {"PYTHONPATH": source, "OMP_NUM_THREADS": "1"}},
    )
    context = ray.data.DataContext.get_current()
    # fail within minutes, not Ray's default 30, if the workers can never be scheduled
    context.execution_no_progress_timeout_s = 180
    context.wait_for_min_actors_s = 180
    try:
        yield ray
    finally:
        started = psutil.Process().children(recursive=True)
        ray.shutdown()
        _gone, alive = psutil.wait_procs(started, timeout=20)
        shutil.rmtree(temp_dir, ignore_errors=True)
        environ.undo()
        assert not alive, f"Ray left processes behind: {[p.pid for p in alive]}"


@pytest.fixture(scope="module")
def scenes_64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """64 images of different colours and a bvpi data file naming them; two rows name a
    clip instead (data lines 39 and 64: a video of 4 of those images, a list of 3)."""
    import numpy as np
    from PIL import Image

    from roadscene.data.clips import write_video

    root = tmp_path_factory.mktemp("scenes_64")
    (root / "images").mkdir()
    answer = "Sidewalk: left. Road: right. RoadVsSidewalk: right_of. Nearby: no important close objects visible."  # fmt: skip
    with open(root / "bvpi_sft_test.jsonl", "w", encoding="utf-8") as handle:
        for index in range(ROWS):
            colour = (index * 37 % 256, index * 91 % 256, index * 53 % 256)
            Image.new("RGB", (64, 48), colour).save(root / "images" / f"{index}.png")
            row = {"image": f"images/{index}.png", "prompt": "Describe the scene.", "response": answer}  # fmt: skip
            if index == 38:
                frames = [np.asarray(Image.open(root / "images" / f"{i}.png")) for i in range(4)]
                write_video(root / "images" / "clip.webm", frames, fps=2)
                row = {"video": "images/clip.webm", "prompt": "Describe the scene.", "response": answer}  # fmt: skip
            elif index == ROWS - 1:
                row = {"frames": [f"images/{i}.png" for i in (5, 6, 7)], "fps": 2, "prompt": "Describe the scene.", "response": answer}  # fmt: skip
            handle.write(json.dumps(row) + "\n")
    return root / "bvpi_sft_test.jsonl"


@pytest.fixture(scope="module")
def local_output(tiny_smolvlm_dir: Path, scenes_64: Path) -> Path:
    out = scenes_64.parent / "local.jsonl"
    predict_file(scenes_64, out, ModelCard.read(tiny_smolvlm_dir), SETTINGS, progress=False)
    return out


def test_rerun_resumes_and_a_killed_worker_loses_no_row(
    local_ray, tiny_smolvlm_dir: Path, scenes_64: Path, local_output: Path, tmp_path: Path
) -> None:
    """The rerun of an interrupted run predicts only what is missing, although a worker dies
    (as if OOM-killed) in the middle of a block, and the file ends as the local run's bytes."""
    lines = local_output.read_text().splitlines(keepends=True)
    blocks = [lines[first : first + 4] for first in range(0, ROWS, 4)]
    # what an interrupted run leaves: whole blocks in the order they finished, a torn line
    out = tmp_path / "ray.jsonl"
    out.write_text("".join(blocks[3] + blocks[0] + blocks[7]) + blocks[5][0][:25])
    marker = tmp_path / "killed"
    started = time.perf_counter()
    summary = predict_file_ray(
        scenes_64, out, ModelCard.read(tiny_smolvlm_dir), SETTINGS, RaySettings(num_workers=2),
        progress=False, kill_worker_once=KillWorkerOnce(line=37, marker=marker),
    )  # fmt: skip
    assert marker.exists(), "no worker was killed"
    assert (summary.already_done, summary.written) == (12, ROWS - 12)
    assert 0 < summary.seconds <= time.perf_counter() - started
    # every row exactly once, in data order: the bytes of the local run
    assert out.read_bytes() == local_output.read_bytes()


def test_a_pool_the_cluster_cannot_hold_is_refused(
    local_ray, tiny_smolvlm_dir: Path, scenes_64: Path, tmp_path: Path
) -> None:
    from roadscene.errors import InputError

    card = ModelCard.read(tiny_smolvlm_dir)
    for settings, message in [
        (RaySettings(num_workers=3), "3 workers x 1 CPU"),
        (RaySettings(num_workers=1, gpus_per_worker=1), "the Ray cluster has 0"),
    ]:
        with pytest.raises(InputError, match=message):
            predict_file_ray(scenes_64, tmp_path / "p.jsonl", card, SETTINGS, settings)
    assert not (tmp_path / "p.jsonl").exists()
