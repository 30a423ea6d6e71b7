"""The server on a real socket (uvicorn, 127.0.0.1, a free port): concurrent clients share model
batches, a frame the model fails on never fails its batch-mates, one client's flood is limited
while another is served, and uploads too large or too slow are refused before they are read."""

from __future__ import annotations

import copy
import io
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from PIL import Image
from serve_helpers import TEST_MAX_NEW_TOKENS, scene_frame, upload

from roadscene.data.examples import VisionTextExample
from roadscene.predict.describe import describe_prompt
from roadscene.serve import ServeSettings
from roadscene.serve.app import create_app


def _settings(**overrides) -> ServeSettings:
    return ServeSettings(max_new_tokens=TEST_MAX_NEW_TOKENS, **overrides)


def _post_all(url: str, frames: list[bytes]) -> list[httpx.Response]:
    """Post every frame at once, one client each."""

    def post(frame: bytes) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            return client.post(f"{url}/v1/describe", files=upload(frame))

    with ThreadPoolExecutor(len(frames)) as pool:
        return list(pool.map(post, frames))


def test_concurrent_clients_share_a_batch(serve_predictor, live_server) -> None:
    frames = [scene_frame(i) for i in range(4)]
    app = create_app(_settings(max_batch_size=4, max_wait_ms=400), serve_predictor)
    with live_server(app) as server:
        responses = _post_all(server.url, frames)
    bodies = [r.json() for r in responses]
    assert all(r.status_code == 200 for r in responses), bodies
    assert max(b["latency"]["batch_size"] for b in bodies) > 1  # gathered into one model call
    # a frame's answer does not depend on its batch-mates
    prompt = describe_prompt(serve_predictor.card)
    decoding = _settings().decoding()
    for frame, body in zip(frames, bodies, strict=True):
        image = Image.open(io.BytesIO(frame)).convert("RGB")
        example = VisionTextExample(images=[image], prompt=prompt, image_ref="alone")
        [alone] = serve_predictor.generate_batch([example], decoding)
        assert body["answer"] == alone


def test_a_frame_the_model_fails_on_never_fails_its_batch_mates(
    serve_predictor, live_server
) -> None:
    poisoned = copy.copy(serve_predictor)  # the same model; this copy fails on one frame
    real_generate = serve_predictor.generate_batch

    def generate_batch(examples, decoding):
        if any(example.images[0].getpixel((0, 0)) == (255, 0, 255) for example in examples):
            raise RuntimeError("out of memory (simulated)")
        return real_generate(examples, decoding)

    poisoned.generate_batch = generate_batch
    bad_image = Image.open(io.BytesIO(scene_frame(5, fmt="PNG"))).convert("RGB")
    bad_image.putpixel((0, 0), (255, 0, 255))
    bad = io.BytesIO()
    bad_image.save(bad, "PNG")
    frames = [scene_frame(0), bad.getvalue(), scene_frame(1), scene_frame(2)]
    app = create_app(_settings(max_batch_size=4, max_wait_ms=400), poisoned)
    with live_server(app) as server:
        responses = _post_all(server.url, frames)
        metrics = httpx.get(f"{server.url}/metrics").text
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 500, 200, 200], [r.text for r in responses]
    failed = responses[1].json()
    assert failed["error"] == "model_error" and "out of memory (simulated)" in failed["detail"]
    assert "roadscene_batch_retries_total 1.0" in metrics


def _bind_source(address: str) -> bool:
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _bind_source("127.0.0.2"), reason="no second loopback address here")
def test_one_clients_flood_is_limited_while_another_is_served(serve_predictor, live_server) -> None:
    dark = io.BytesIO()
    Image.new("RGB", (64, 48), (3, 3, 3)).save(dark, "JPEG")  # answered without the model
    app = create_app(_settings(rate_per_s=1, rate_burst=2), serve_predictor)
    with live_server(app) as server:
        flooder = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.1"))
        neighbour = httpx.Client(
            transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=60
        )
        with flooder, neighbour:
            answers = [
                flooder.post(f"{server.url}/v1/describe", files=upload(dark.getvalue()))
                for _ in range(30)
            ]
            served = neighbour.post(f"{server.url}/v1/describe", files=upload(scene_frame(0)))
            health = flooder.get(f"{server.url}/healthz")
    limited = [r for r in answers if r.status_code == 429]
    # 30 requests in a few seconds against 1 a second, bursts of 2
    assert len(limited) >= 15 and all(r.status_code in (200, 429) for r in answers)
    body = limited[0].json()
    assert body["error"] == "rate_limited"
    assert "too many requests from 127.0.0.1" in body["detail"]
    assert int(limited[0].headers["retry-after"]) >= 1
    assert served.status_code == 200 and served.json()["answer"]
    assert health.status_code == 200  # health is never limited


def _raw_request(port: int, head: bytes, body: bytes = b"", wait_s: float = 10) -> tuple[int, dict]:
    """Send a request head (and part of a body) over a plain socket; return the answer's status
    and JSON body."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as conn:
        conn.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 10:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            if data.rstrip().endswith(b"}"):
                break
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), json.loads(rest.split(b"\r\n\r\n", 1)[1])


def test_too_large_or_too_slow_uploads_are_refused_unread(serve_predictor, live_server) -> None:
    app = create_app(_settings(request_timeout_s=1.0), serve_predictor)
    head = (
        "POST /v1/describe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {}\r\n\r\n"
    )
    with live_server(app) as server:
        # 50 MB announced: refused from the head, before a byte of the body is sent
        status, body = _raw_request(server.port, head.format(50 * 1024 * 1024).encode())
        assert status == 413 and "52,428,800 bytes is over the limit" in body["detail"]
        # 1000 bytes announced, the start of an image sent, then silence: refused in time
        part = (
            b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
        )
        start = time.monotonic()
        status, body = _raw_request(server.port, head.format(1000).encode(), part)
        assert status == 408 and body["error"] == "timeout"
        assert "took over 1 s" in body["detail"] and time.monotonic() - start < 5
        # and the server still answers
        assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
