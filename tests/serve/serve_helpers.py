"""Helpers of the server tests: synthetic street frames as files, upload forms, and a real
uvicorn server on 127.0.0.1 with a free port."""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import time

# answers are cut at this length: the tiny model's fields come first, its caption is noise
TEST_MAX_NEW_TOKENS = 96


def scene_frame(index: int, size: int = 160, fmt: str = "JPEG") -> bytes:
    """Synthetic street scene number `index` (the built-in distribution, seed 0) as a file."""
    from PIL import Image

    from roadscene.data.synth import RenderOptions, SceneDistribution, render_scene, sample_scenes

    scenes = list(sample_scenes(SceneDistribution.builtin(), index + 1, seed=0))
    pixels = render_scene(scenes[index], index, RenderOptions(size=size, weather=False))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def upload(data: bytes, name: str = "frame.jpg", content_type: str = "image/jpeg") -> dict:
    return {"image": (name, data, content_type)}


class LiveServer:
    """`roadscene.serve`'s app under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, app) -> None:
        import uvicorn

        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        with contextlib.suppress(OSError):
            self.socket.close()
