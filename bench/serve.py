"""Serving throughput: `roadscene serve` with micro-batching vs the same server with batch size 1,
each under the same concurrent clients, on loopback only, bounded in time.

    .venv/bin/python bench/serve.py [--clients 16] [--seconds 60] [--rounds 2] [--batch-size 8]

For each mode the real command (`python -m roadscene serve`) is started as its own process on
127.0.0.1 with a tiny random SmolVLM (the tests' size) on CPU, the rate limit off (all clients share
one address). Every client opens a live session and posts synthetic street frames (160 px JPEGs)
one after another, as a phone would, for a warm-up and then for the measured `--seconds`. Reported
per mode: answered frames per second, errors, p50 / p95 latency as the client sees it, the mean
batch size (from /metrics) and the server's resident memory after the warm-up and after the run.
Goals: zero errors; micro-batching >= 2.5x the frames/s of batch size 1; memory after the run
within 10 % of after the warm-up. Absolute figures depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

from roadscene.data.synth import RenderOptions, SceneDistribution, render_scene, sample_scenes
from roadscene.models import get_family


def _frames(count: int) -> list[bytes]:
    scenes = sample_scenes(SceneDistribution.builtin(), count, seed=7)
    frames = []
    for index, scene in enumerate(scenes):
        buffer = io.BytesIO()
        Image.fromarray(render_scene(scene, index, RenderOptions(size=160))).save(buffer, "JPEG")
        frames.append(buffer.getvalue())
    return frames


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def _mean_batch(metrics: str) -> float:
    total = float(re.search(r"^roadscene_batch_size_sum (\S+)$", metrics, re.M).group(1))
    count = float(re.search(r"^roadscene_batch_size_count (\S+)$", metrics, re.M).group(1))
    return total / count if count else 0.0


async def _client(url: str, frames: list[bytes], offset: int, until: float, record: dict) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        session = (await client.post("/v1/sessions")).json()["session"]
        index = offset
        while time.perf_counter() < until:
            frame = frames[index % len(frames)]
            index += 1
            start = time.perf_counter()
            try:
                response = await client.post(
                    "/v1/describe",
                    files={"image": ("frame.jpg", frame, "image/jpeg")},
                    data={"session": session},
                )
                ok = response.status_code == 200
                detail = "" if ok else f"{response.status_code} {response.text[:200]}"
            except httpx.HTTPError as err:
                ok, detail = False, f"{type(err).__name__}: {err}"
            if ok:
                record["latencies"].append(time.perf_counter() - start)
            else:
                record["errors"].append(detail)


async def _load(url: str, frames: list[bytes], clients: int, seconds: float) -> dict:
    record: dict = {"latencies": [], "errors": []}
    start = time.perf_counter()
    until = start + seconds
    await asyncio.gather(*(_client(url, frames, i, until, record) for i in range(clients)))
    record["elapsed"] = time.perf_counter() - start
    return record


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else 0


def run_mode(model: Path, batch_size: int, args: argparse.Namespace, frames: list[bytes]) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "roadscene", "serve", "--model", str(model), "--port", str(port),
        "--max-batch-size", str(batch_size), "--max-wait-ms", str(args.max_wait_ms),
        "--rate-per-s", "0", "--max-queue", "256", "--request-timeout-s", "300",
        "--threads", str(args.threads), "--max-new-tokens", str(args.max_new_tokens),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited: {server.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start within 300 s")
            time.sleep(0.5)
        warm = asyncio.run(_load(url, frames, args.clients, args.warmup))
        rss_warm = _rss_mb(server.pid)
        load_before = os.getloadavg()[0]
        run = asyncio.run(_load(url, frames, args.clients, args.seconds))
        load_after = os.getloadavg()[0]
        rss_after = _rss_mb(server.pid)
        metrics = httpx.get(f"{url}/metrics").text
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    latencies = run["latencies"]
    return {
        "latencies": latencies,
        "max_batch_size": batch_size,
        "frames": len(latencies),
        "errors": len(run["errors"]) + len(warm["errors"]),
        "first_errors": (warm["errors"] + run["errors"])[:3],
        "seconds": round(run["elapsed"], 1),
        "frames_per_s": round(len(latencies) / run["elapsed"], 3),
        "p50_s": round(_percentile(latencies, 50), 3),
        "p95_s": round(_percentile(latencies, 95), 3),
        "mean_batch_size": round(_mean_batch(metrics), 2),  # warm-up and run together
        "rss_after_warmup_mb": round(rss_warm, 1),
        "rss_after_run_mb": round(rss_after, 1),
        "rss_change_pct": round(100 * (rss_after - rss_warm) / rss_warm, 1),
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }


def _combined(runs: list[dict]) -> dict:
    """One mode over its rounds: frames over the summed time, percentiles over every latency."""
    latencies = [value for run in runs for value in run.pop("latencies")]
    seconds = sum(run["seconds"] for run in runs)
    return {
        "max_batch_size": runs[0]["max_batch_size"],
        "frames": len(latencies),
        "errors": sum(run["errors"] for run in runs),
        "frames_per_s": round(len(latencies) / seconds, 3),
        "p50_s": round(_percentile(latencies, 50), 3),
        "p95_s": round(_percentile(latencies, 95), 3),
        "mean_batch_size": round(statistics.mean(run["mean_batch_size"] for run in runs), 2),
        "worst_rss_change_pct": max((run["rss_change_pct"] for run in runs), key=abs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0, help="measured time per run")
    parser.add_argument("--warmup", type=float, default=15.0, help="untimed load per run")
    parser.add_argument("--rounds", type=int, default=1, help="runs per mode, order alternating")
    parser.add_argument("--batch-size", type=int, default=8, help="micro-batching's max batch")
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--threads", type=int, default=1, help="server torch threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    frames = _frames(16)
    modes = {"batch size 1": 1, "micro-batching": args.batch_size}
    runs: dict[str, list[dict]] = {name: [] for name in modes}
    with tempfile.TemporaryDirectory() as tmp:
        model = get_family("smolvlm").build_tiny(Path(tmp) / "model", seed=0)
        for round_index in range(args.rounds):
            # alternate the order (A B, B A, ...) so a drift in the machine's load hits both
            order = list(modes) if round_index % 2 == 0 else list(reversed(modes))
            for name in order:
                run = run_mode(model, modes[name], args, frames)
                shown = {k: v for k, v in run.items() if k != "latencies"}
                print(f"round {round_index + 1}, {name}: {json.dumps(shown)}", file=sys.stderr)
                runs[name].append(run)
    results = {name: _combined(mode_runs) for name, mode_runs in runs.items()}
    one, many = results["batch size 1"], results["micro-batching"]
    ratio = many["frames_per_s"] / one["frames_per_s"] if one["frames_per_s"] else float("inf")
    print(f"\n{args.clients} clients, {args.rounds} x {args.seconds:g} s per mode, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    print("| mode | frames/s | p50 | p95 | errors | mean batch | RSS after warm-up -> after run |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        memory = ", ".join(
            f"{run['rss_after_warmup_mb']:.0f} -> {run['rss_after_run_mb']:.0f} MB "
            f"({run['rss_change_pct']:+.1f} %)"
            for run in r["runs"]
        )
        print(
            f"| {name} (max {r['max_batch_size']}) | {r['frames_per_s']:.2f} | {r['p50_s']:.2f} s "
            f"| {r['p95_s']:.2f} s | {r['errors']} | {r['mean_batch_size']:.1f} | {memory} |"
        )
    print(f"\nmicro-batching / batch size 1: {ratio:.2f}x (goal >= 2.5)")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    main()
