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

    buffer = io.BytesIO()
    Image.fromarray(scene_pixels(index, size)).save(buffer, fmt)
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


def scene_pixels(index: int, size: int = 160):
    """Scene number `index` (as in `scene_frame`) as an (S, S, 3) uint8 array."""
    from roadscene.data.synth import RenderOptions, SceneDistribution, render_scene, sample_scenes

    scenes = list(sample_scenes(SceneDistribution.builtin(), index + 1, seed=0))
    return render_scene(scenes[index], index, RenderOptions(size=size, weather=False))


def write_y4m(path, frames, fps: int = 15) -> None:
    """RGB frames (T, H, W, 3) as a Y4M clip Chromium's fake camera plays
    (`--use-file-for-fake-video-capture`): the header must end within the first 200 bytes,
    the frame rate be a whole number, the size even; each frame is `FRAME\\n` and its I420
    planes (BT.601 limited range, chroma averaged over 2 x 2 blocks)."""
    import numpy as np

    count, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError("Y4M 4:2:0 needs an even width and height")
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{int(fps)}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames.astype(np.float32):
            r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
            y = 16 + 0.256788 * r + 0.504129 * g + 0.097906 * b
            u = 128 - 0.148223 * r - 0.290993 * g + 0.439216 * b
            v = 128 + 0.439216 * r - 0.367788 * g - 0.071427 * b

            def pool(plane):
                return plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))

            handle.write(b"FRAME\n")
            for plane in (y, pool(u), pool(v)):
                handle.write(np.clip(np.rint(plane), 0, 255).astype(np.uint8).tobytes())
