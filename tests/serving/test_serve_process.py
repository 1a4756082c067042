import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from bivec import Encoder

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_bivec_serve_on_a_loopback_port(tiny_model_dir):
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": SRC, "HF_HUB_OFFLINE": "1"}
    server = subprocess.Popen(
        [sys.executable, "-c", "from bivec.cli import main; main()", "serve", str(tiny_model_dir), "--port", str(port),
         "--name", "tiny", "--api-key", "k", "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not come up in 120 s"
            time.sleep(0.5)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0)
        texts = ["a man plays a guitar", "a dog runs in the park"]
        response = client.embeddings.create(input=texts, model="tiny")
        np.testing.assert_allclose([d.embedding for d in response.data],
                                   Encoder.from_pretrained(tiny_model_dir).encode(texts, normalize=True), atol=1e-6)
        with pytest.raises(openai.AuthenticationError, match="missing or wrong API key"):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="bad", max_retries=0).models.list()
    finally:
        server.terminate()
        server.wait(30)
    assert "serving 'tiny' (32 dims) on http://127.0.0.1" in server.stdout.read()
