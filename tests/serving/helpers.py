"""Fixtures and helpers for the server tests (imported by them: a conftest.py here would shadow
tests/conftest.py): an in-process server on the tiny model, and a gate that holds the model."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bivec import Encoder
from bivec.serving import ServerConfig, create_app


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir) -> Encoder:
    return Encoder.from_pretrained(tiny_model_dir)


@pytest.fixture
def serve(tiny_model_dir) -> Callable[..., TestClient]:
    """``with serve(max_length=8, **config) as client``: a running app on a fresh tiny encoder."""

    @contextmanager
    def start(max_length: int = 512, **config) -> Iterator[TestClient]:
        encoder = Encoder.from_pretrained(tiny_model_dir, max_length=max_length)
        app = create_app(encoder, ServerConfig(model_name="tiny", **config))
        with TestClient(app) as client:
            client.encoder = encoder
            yield client

    return start


class Gate:
    """Makes the encoder's next call wait until ``open()``, so later requests pile up in the queue."""

    def __init__(self, encoder: Encoder, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self._released = threading.Event(), threading.Event()
        encode = encoder.encode

        def gated(*args, **kwargs):
            self.entered.set()
            assert self._released.wait(60), "gate never opened"
            return encode(*args, **kwargs)

        monkeypatch.setattr(encoder, "encode", gated)

    def open(self) -> None:
        self._released.set()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def metric(client: TestClient, name: str) -> float:
    """One sample's value from /metrics."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")
