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
    """The tiny random SmolVLM, loaded once for every server test."""
    from roadscene.predict import ModelCard, Predictor

    return Predictor.load(ModelCard.read(tiny_smolvlm_dir))


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """The server's model thread answers on one intra-op thread, as the other tiny-model tests."""
    yield


@pytest.fixture
def live_server():
    """`with live_server(app) as server:` a real server at `server.url`, stopped afterwards."""

    @contextlib.contextmanager
    def start(app) -> Iterator[LiveServer]:
        with LiveServer(app) as server:
            yield server

    return start
