"""The app in-process (TestClient, lifespan included) on the tiny model: the OpenAI client, batching,
failures, limits, authentication and metrics."""

import base64
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import openai
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
        encode = encoder.encode_tokenized

        def gated(*args, **kwargs):
            self.entered.set()
            assert self._released.wait(60), "gate never opened"
            return encode(*args, **kwargs)

        monkeypatch.setattr(encoder, "encode_tokenized", gated)

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


TEXTS = ["a man plays a guitar", "someone is playing music", "the stock market fell sharply today"]


def embed(client, body):
    return client.post("/v1/embeddings", json=body)


def test_openai_client_round_trip_equals_encode(serve):
    with serve(api_key="secret") as server:
        client = openai.OpenAI(base_url="http://testserver/v1", api_key="secret", http_client=server, max_retries=0)
        expected = server.encoder.encode(TEXTS, normalize=True)

        response = client.embeddings.create(input=TEXTS, model="tiny")  # the client asks for base64 by default
        assert [d.index for d in response.data] == [0, 1, 2]
        np.testing.assert_allclose([d.embedding for d in response.data], expected, atol=1e-6)
        tokens = sum(len(t.input_ids) for t in server.encoder.tokenize(TEXTS))
        assert response.usage.prompt_tokens == response.usage.total_tokens == tokens
        assert response.model == "tiny"

        as_floats = client.embeddings.create(input=TEXTS[0], model="tiny", encoding_format="float", dimensions=8)
        np.testing.assert_allclose(
            as_floats.data[0].embedding, server.encoder.encode(TEXTS[:1], normalize=True, dimensions=8)[0], atol=1e-6
        )
        queried = client.embeddings.create(input=TEXTS[:2], model="tiny", extra_body={"instruction": "retrieve similar text"})
        np.testing.assert_allclose(
            [d.embedding for d in queried.data],
            server.encoder.encode([["retrieve similar text", t] for t in TEXTS[:2]], normalize=True),
            atol=1e-6,
        )
        assert [m.id for m in client.models.list()] == ["tiny"]


def test_base64_is_little_endian_float32(serve):
    with serve() as server:
        body = embed(server, {"input": TEXTS[0], "encoding_format": "base64"}).json()
        vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
        np.testing.assert_allclose(vector, server.encoder.encode(TEXTS[0], normalize=True)[0], atol=1e-6)


def test_concurrent_requests_are_batched(serve, monkeypatch):
    with serve(max_wait_ms=0) as server:
        gate = Gate(server.encoder, monkeypatch)
        with ThreadPoolExecutor(4) as pool:
            first = pool.submit(embed, server, {"input": TEXTS[0]})
            assert gate.entered.wait(30)
            rest = [pool.submit(embed, server, {"input": [text]}) for text in TEXTS]
            wait_until(lambda: server.get("/health").json()["queued_texts"] == 3, "three queued requests")
            gate.open()
            responses = [first.result()] + [f.result() for f in rest]
    assert [r.status_code for r in responses] == [200] * 4
    got = [r.json()["data"][0]["embedding"] for r in responses[1:]]
    np.testing.assert_allclose(got, server.encoder.encode(TEXTS, normalize=True), atol=1e-6)
    # Two batches: the first request alone, then the three that queued behind it together.
    assert metric(server, "bivec_batch_requests_count") == 2
    assert metric(server, "bivec_batch_requests_sum") == 4
    assert metric(server, "bivec_batch_texts_sum") == 4


def test_a_failing_request_does_not_fail_its_batch(serve, monkeypatch):
    with serve(max_wait_ms=0) as server:
        encode = server.encoder.encode_tokenized
        (poison,) = server.encoder.tokenize(["the dog"])

        def poisoned(inputs, **kwargs):
            if poison in inputs:
                raise RuntimeError("poisoned input")
            return encode(inputs, **kwargs)

        monkeypatch.setattr(server.encoder, "encode_tokenized", poisoned)
        gate = Gate(server.encoder, monkeypatch)
        with ThreadPoolExecutor(3) as pool:
            first = pool.submit(embed, server, {"input": TEXTS[0]})
            assert gate.entered.wait(30)
            bad = pool.submit(embed, server, {"input": ["the dog"]})
            good = pool.submit(embed, server, {"input": [TEXTS[1]]})
            wait_until(lambda: server.get("/health").json()["queued_texts"] == 2, "two queued requests")
            gate.open()
            assert first.result().status_code == 200
            assert bad.result().status_code == 500
            assert bad.result().json()["error"]["message"] == "encoding failed: RuntimeError: poisoned input"
            assert good.result().status_code == 200
        np.testing.assert_allclose(good.result().json()["data"][0]["embedding"],
                                   server.encoder.encode(TEXTS[1], normalize=True)[0], atol=1e-6)


BAD_BODIES = [
    ({"input": ""}, 422, "input is an empty string"),
    ({"input": []}, 422, "input is an empty list"),
    ({"input": ["a dog", " "]}, 422, "input[1] is an empty string"),
    ({"input": 5}, 422, "input must be a string, a list of strings or token ids, got a number"),
    ({"input": [[1, 2], []]}, 422, "input[1] must be a non-empty list of token ids (integers)"),
    ({"input": [[1, "a"]]}, 422, "input[0] must be a non-empty list of token ids (integers)"),
    ({"input": ["a", 3]}, 422, "input[1] must be a string like the other items, got a number"),
    ({"input": ["a", None]}, 422, "input[1] must be a string like the other items, got null"),
    ({"input": [1, 100000]}, 400, "inputs[0]: token id 100000 is outside the vocabulary (0 to 127)"),
    ({"input": [5, 6], "instruction": "q"}, 400, "instruction applies to text inputs; token-id inputs carry their own tokens"),
    ({}, 422, "input: Field required"),
    ({"input": "a", "dimensions": "8"}, 422, "dimensions: Input should be a valid integer"),
    ({"input": "a", "dimensions": 0}, 422, "dimensions: Input should be greater than or equal to 1"),
    ({"input": "a", "dimensions": 33}, 422, "dimensions: must be between 1 and 32, got 33"),
    ({"input": "a", "encoding_format": "int8"}, 422, "encoding_format: Input should be 'float' or 'base64'"),
    ({"input": "a", "instruction": 3}, 422, "instruction: Input should be a valid string"),
    ({"input": "a", "dimension": 8}, 422, "dimension: unknown field"),
    ({"input": "a", "model": "gpt"}, 404, "model 'gpt' is not served here; this server serves 'tiny'"),
    (["a"], 400, "request body must be a JSON object with an 'input' field"),
]


def test_bad_inputs_get_their_status_and_message_and_the_server_keeps_serving(serve):
    with serve() as server:
        for body, status, message in BAD_BODIES:
            response = embed(server, body)
            assert (response.status_code, response.json()["error"]["message"]) == (status, message), body
        response = server.post("/v1/embeddings", content=b'{"input": "a dog",', headers={"content-type": "application/json"})
        assert response.status_code == 400
        assert response.json()["error"]["message"].startswith("request body is not valid JSON")
        response = embed(server, {"input": TEXTS})
        assert response.status_code == 200 and len(response.json()["data"]) == 3
        assert server.get("/health").json()["status"] == "ok"


def test_long_inputs_are_cut_or_refused(serve):
    long_text = " ".join(["a dog runs in the park"] * 4)
    with serve(max_length=8) as server:
        response = embed(server, {"input": [long_text]})
        assert response.status_code == 200
        np.testing.assert_allclose(response.json()["data"][0]["embedding"],
                                   server.encoder.encode(long_text, normalize=True)[0], atol=1e-6)
        assert response.json()["usage"]["prompt_tokens"] == 8
    with serve(max_length=8, truncate=False) as server:
        response = embed(server, {"input": ["a dog", long_text]})
        assert response.status_code == 413
        assert response.json()["error"]["message"] == (
            "input is too long: inputs[1] has 25 tokens, more than max_length=8 tokens"
        )
        assert embed(server, {"input": ["a dog"]}).status_code == 200


def test_too_many_inputs(serve):
    with serve(max_inputs=2) as server:
        response = embed(server, {"input": TEXTS})
        assert response.status_code == 413
        assert response.json()["error"]["message"] == "input has 3 items; this server takes at most 2 per request"


def test_full_queue_answers_429_with_retry_after(serve, monkeypatch):
    with serve(max_wait_ms=0, max_queue_texts=2, retry_after_s=3) as server:
        gate = Gate(server.encoder, monkeypatch)
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(embed, server, {"input": TEXTS[0]})
            assert gate.entered.wait(30)
            queued = pool.submit(embed, server, {"input": TEXTS[:2]})
            wait_until(lambda: server.get("/health").json()["queued_texts"] == 2, "two queued texts")
            rejected = embed(server, {"input": TEXTS[2]})
            gate.open()
            assert first.result().status_code == queued.result().status_code == 200
        assert rejected.status_code == 429 and rejected.headers["retry-after"] == "3"
        assert rejected.json()["error"]["message"] == "the server is busy: 2 texts are waiting (max_queue_texts=2)"
        assert metric(server, "bivec_queue_texts") == 0


def test_api_key(serve):
    with serve(api_key="secret") as server:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"}):
            response = server.post("/v1/embeddings", json={"input": "a"}, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            assert "missing or wrong API key" in response.json()["error"]["message"]
        assert server.get("/v1/models").status_code == 401
        assert server.get("/health").status_code == 200
        assert server.post("/v1/embeddings", json={"input": "a"}, headers={"Authorization": "Bearer secret"}).status_code == 200


def test_not_started_answers_503(tiny_encoder):
    client = TestClient(create_app(tiny_encoder, ServerConfig(retry_after_s=2)))  # no `with`: no lifespan, no batcher
    assert client.get("/health").status_code == 503
    response = embed(client, {"input": "a dog"})
    assert response.status_code == 503 and response.headers["retry-after"] == "2"
    assert response.json()["error"]["message"] == "the server is not ready to encode"


def test_metrics_count_requests_and_texts(serve):
    with serve() as server:
        embed(server, {"input": TEXTS})
        embed(server, {"input": ""})
        text = server.get("/metrics").text
        assert 'bivec_requests_total{path="/v1/embeddings",status="200"} 1.0' in text
        assert 'bivec_requests_total{path="/v1/embeddings",status="422"} 1.0' in text
        assert metric(server, "bivec_texts_total") == 3
        assert metric(server, "bivec_request_latency_seconds_count") == 2


@pytest.mark.parametrize(("field", "value", "message"), [
    ("max_inputs", 0, "max_inputs must be positive, got 0"),
    ("max_batch_size", 0, "max_batch_size must be positive, got 0"),
    ("max_merged_tokens", 0, "max_merged_tokens must be positive, got 0"),
    ("max_wait_ms", -1, "max_wait_ms must be >= 0, got -1"),
    ("api_key", " ", "api_key must not be empty"),
])
def test_config_rejects_bad_values(field, value, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**{field: value})


def test_a_lone_surrogate_is_a_400_in_the_openai_shape(serve):
    with serve() as server:
        for body, where in (('{"input": ["a dog", "bad \\ud800 text"]}', "input[1]"),
                            ('{"input": "a dog", "instruction": "\\udfff"}', "instruction")):
            response = server.post("/v1/embeddings", content=body.encode(), headers={"content-type": "application/json"})
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["message"].startswith(f"{where} is not valid Unicode: a lone surrogate")
            assert error["type"] == "invalid_request_error"
        assert embed(server, {"input": "a dog"}).status_code == 200


def test_a_body_that_is_not_json_is_named_by_its_content_type(serve):
    with serve() as server:
        response = server.post("/v1/embeddings", content=b"input=a dog", headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 400
        assert response.json()["error"]["message"] == (
            "send the request body as JSON with 'Content-Type: application/json' (got 'application/x-www-form-urlencoded')")


def test_the_api_description_needs_the_key_too(serve):
    with serve(api_key="secret") as server:
        assert server.get("/openapi.json").status_code == 401
        assert server.get("/docs").status_code == 404
        described = server.get("/openapi.json", headers={"Authorization": "Bearer secret"})
        assert described.status_code == 200 and "/v1/embeddings" in described.json()["paths"]
    with serve() as server:
        assert server.get("/openapi.json").status_code == 200 and server.get("/docs").status_code == 200


def test_token_id_inputs_are_encoded_as_the_text_of_those_tokens(serve):
    with serve() as server:
        (item,) = server.encoder.tokenize([TEXTS[0]])
        for body in ({"input": item.input_ids}, {"input": [item.input_ids, item.input_ids]}):
            response = embed(server, body)
            assert response.status_code == 200, response.text
            np.testing.assert_allclose(response.json()["data"][0]["embedding"],
                                       server.encoder.encode(TEXTS[0], normalize=True)[0], atol=1e-6)
        assert response.json()["usage"]["prompt_tokens"] == 2 * len(item.input_ids)


def test_token_id_inputs_to_an_echo_encoder_are_read_twice(tiny_model_dir):
    encoder = Encoder.from_pretrained(tiny_model_dir, echo=True, bidirectional=False, max_length=8)
    ids = encoder.tokenizer("a dog runs")["input_ids"]
    with TestClient(create_app(encoder, ServerConfig(model_name="tiny", truncate=False))) as server:
        response = embed(server, {"input": ids})
        assert response.status_code == 200, response.text
        # The tiny tokenizer splits on spaces, so the ids read twice are the text read twice.
        np.testing.assert_allclose(response.json()["data"][0]["embedding"],
                                   encoder.encode("a dog runs", normalize=True)[0], atol=1e-6)
        assert response.json()["usage"]["prompt_tokens"] == 7
        response = embed(server, {"input": encoder.tokenizer("a dog runs in the park")["input_ids"]})
        assert response.status_code == 413 and ("inputs[0] has 13 tokens, more than max_length=8 tokens "
                                                "(echo reads each text twice)") in response.json()["error"]["message"]
    with TestClient(create_app(encoder, ServerConfig(model_name="tiny"))) as server:
        # Cut so that both copies fit: the text's first 3 words, as encode cuts the text itself.
        response = embed(server, {"input": encoder.tokenizer("a dog runs in the park")["input_ids"]})
        assert response.status_code == 200, response.text
        np.testing.assert_allclose(response.json()["data"][0]["embedding"],
                                   encoder.encode("a dog runs in the park", normalize=True)[0], atol=1e-6)


def test_tokenize_counts_tokens_as_embeddings_does(serve):
    with serve() as server:
        response = server.post("/tokenize", json={"inputs": [TEXTS[0], "a dog"]})
        assert response.status_code == 200, response.text
        tokens = response.json()
        assert [len(t) for t in tokens] == [len(i.input_ids) for i in server.encoder.tokenize([TEXTS[0], "a dog"])]
        assert tokens[1][0] == {"id": 2, "text": "<s>", "special": True} and tokens[1][2]["text"] == "dog"
        usage = embed(server, {"input": "a dog"}).json()["usage"]["prompt_tokens"]
        assert usage == len(tokens[1])
        bad = server.post("/tokenize", json={"inputs": []})
        assert bad.status_code == 422 and "inputs must be a non-empty string" in bad.json()["error"]["message"]
