"""`roadscene serve`: one command starts a real server (here HTTPS with a self-signed certificate
made on the spot, and a token from the environment), and unsafe or wrong options stop it before
any model work, with one line and exit code 2."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest


def _frame() -> dict:
    """An upload form holding one synthetic street scene as a JPEG."""
    from PIL import Image

    from roadscene.data.synth import RenderOptions, SceneDistribution, render_scene, sample_scenes

    [scene] = sample_scenes(SceneDistribution.builtin(), 1, seed=0)
    buffer = io.BytesIO()
    Image.fromarray(render_scene(scene, 0, RenderOptions(size=160))).save(buffer, "JPEG")
    return {"image": ("frame.jpg", buffer.getvalue(), "image/jpeg")}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unsafe_or_wrong_options_stop_before_the_model(run_cli, tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ROADSCENE_TOKEN"}
    missing_model = tmp_path / "no-model-here"  # never read: the options fail first
    result = run_cli("serve", "--model", missing_model, "--host", "0.0.0.0", env=env)
    assert result.returncode == 2
    assert "binding 0.0.0.0 lets other machines use the model: pass --token" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    result = run_cli("serve", "--model", missing_model, "--max-batch-size", "0", env=env)
    assert result.returncode == 2 and "--max-batch-size" in result.stderr
    result = run_cli("serve", "--model", missing_model, "--cert", tmp_path / "c.pem", env=env)
    assert result.returncode == 2 and "--cert and --key go together" in result.stderr


@pytest.mark.slow
def test_one_command_starts_an_https_server(tiny_smolvlm_dir, tmp_path) -> None:
    port = _free_port()
    token = "a-token-from-the-environment"
    env = {**os.environ, "ROADSCENE_TOKEN": token, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "roadscene", "serve", "--model", str(tiny_smolvlm_dir),
        "--port", str(port), "--https", "--cert-dir", str(tmp_path / "tls"),
        "--max-new-tokens", "32", "--threads", "1",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    cert = tmp_path / "tls" / "roadscene-serve.crt"
    url = f"https://localhost:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "the server did not come up"
            try:
                if httpx.get(f"{url}/healthz", verify=str(cert)).status_code == 200:
                    break
            except (httpx.TransportError, OSError):
                time.sleep(0.5)
        # the certificate made for this machine is trusted for localhost and 127.0.0.1
        assert httpx.get(f"https://127.0.0.1:{port}/", verify=str(cert)).status_code == 200
        assert oct((tmp_path / "tls" / "roadscene-serve.key").stat().st_mode & 0o777) == "0o600"
        refused = httpx.post(f"{url}/v1/describe", files=_frame(), verify=str(cert))
        assert refused.status_code == 401
        answered = httpx.post(
            f"{url}/v1/describe",
            files=_frame(),
            headers={"Authorization": f"Bearer {token}"},
            verify=str(cert),
            timeout=60,
        )
        assert answered.status_code == 200 and answered.json()["answer"].startswith("Sidewalk:")
    finally:
        server.send_signal(signal.SIGINT)
        try:
            output, _ = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            output, _ = server.communicate()
    assert server.returncode == 0, output
    assert f"roadscene serve: open https://localhost:{port}/" in output
