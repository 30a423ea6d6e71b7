"""Fixtures of the server tests: the tiny model loaded once, and a real uvicorn server on
127.0.0.1 with a free port, stopped after its test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_helpers import LiveServer


@pytest.fixture(scope="session")
def serve_predictor(tiny_smolvlm_dir: Path):
    """The tiny random SmolVLM, loaded once for every server test (one torch thread)."""
    import torch

    from roadscene.predict import ModelCard, Predictor

    torch.set_num_threads(1)
    return Predictor.load(ModelCard.read(tiny_smolvlm_dir))


@pytest.fixture
def live_server():
    """`with live_server(app) as server:` a real server at `server.url`, stopped afterwards."""

    @contextlib.contextmanager
    def start(app) -> Iterator[LiveServer]:
        with LiveServer(app) as server:
            yield server

    return start
