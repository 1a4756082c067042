"""The FastAPI app: OpenAI-compatible ``/v1/embeddings``, ``/v1/models``, ``/health``, ``/metrics``."""

from __future__ import annotations

import base64
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException as StarletteHTTPException

from bivec.encoder import Encoder, InputTooLongError
from bivec.serving.batcher import BatcherClosedError, DynamicBatcher, QueueFullError
from bivec.serving.config import ServerConfig
from bivec.serving.metrics import ServerMetrics
from bivec.serving.schemas import EmbeddingRequest, TokenizeRequest

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error",
                503: "server_unavailable", 500: "server_error"}


class ApiError(Exception):
    """An error answered in the OpenAI format: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(self, status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.headers = status, message, param, headers


def _error_response(error: ApiError) -> JSONResponse:
    body = {"error": {"message": error.message, "type": _ERROR_TYPES.get(error.status, "error"),
                      "param": error.param, "code": error.status}}
    return JSONResponse(body, status_code=error.status, headers=error.headers)


def _validation_error(exc: RequestValidationError, content_type: str) -> ApiError:
    """One message naming each bad field; 400 when the body is not a JSON object at all."""
    errors = exc.errors()
    if content_type.split(";")[0].strip().lower() not in ("application/json", ""):
        return ApiError(400, f"send the request body as JSON with 'Content-Type: application/json' (got {content_type!r})")
    for error in errors:
        if error["type"] == "json_invalid":
            return ApiError(400, f"request body is not valid JSON: {error.get('ctx', {}).get('error', error['msg'])}")
        if tuple(error["loc"]) == ("body",):
            return ApiError(400, "request body must be a JSON object with an 'input' field")
    parts, params = [], []
    for error in errors:
        field = ".".join(str(part) for part in error["loc"][1:]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        parts.append(message if message.startswith(field) else f"{field}: {message}")
        params.append(field)
    return ApiError(422, "; ".join(parts), param=params[0])


def create_app(encoder: Encoder, config: ServerConfig | None = None) -> FastAPI:
    """An app serving ``encoder``; the batcher starts and stops with the app's lifespan.

    Example:
        >>> import uvicorn  # doctest: +SKIP
        >>> uvicorn.run(create_app(Encoder.from_pretrained(), ServerConfig(model_name="smollm2")))  # doctest: +SKIP
    """
    config = config or ServerConfig()
    metrics = ServerMetrics()
    batcher = DynamicBatcher(encoder, config, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    # With an API key, the API's description is behind the key too; the interactive pages, which a
    # browser cannot send the key from, are off.
    keyed = config.api_key is not None
    app = FastAPI(title="bivec embeddings", lifespan=lifespan, openapi_url=None if keyed else "/openapi.json",
                  docs_url=None if keyed else "/docs", redoc_url=None if keyed else "/redoc")
    app.state.batcher, app.state.metrics, app.state.config = batcher, metrics, config

    @app.middleware("http")
    async def _count(request: Request, call_next):
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "other")
        metrics.observe_request(path, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(_validation_error(exc, request.headers.get("content-type", "")))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error_response(ApiError(500, f"internal error: {type(exc).__name__}: {exc}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(ApiError(exc.status_code, str(exc.detail), headers=exc.headers))

    async def _authorize(request: Request) -> None:
        if config.api_key is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), config.api_key.encode()):
            raise ApiError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": "Bearer"})

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(_authorize)])

    @v1.post("/embeddings")
    async def embeddings(body: EmbeddingRequest) -> JSONResponse:
        if body.model is not None and body.model != config.model_name:
            raise ApiError(404, f"model {body.model!r} is not served here; this server serves {config.model_name!r}",
                           param="model")
        if body.dimensions is not None and body.dimensions > encoder.dim:
            raise ApiError(422, f"dimensions: must be between 1 and {encoder.dim}, got {body.dimensions}",
                           param="dimensions")
        count = len(body.token_ids if body.token_ids is not None else body.texts)
        if count > config.max_inputs:
            raise ApiError(413, f"input has {count} items; this server takes at most {config.max_inputs} "
                                "per request", param="input")
        instruction = body.instruction
        if body.prompt_name is not None:
            if body.instruction is not None:
                raise ApiError(400, "give instruction or prompt_name, not both", param="prompt_name")
            try:
                instruction = encoder.prompt(body.prompt_name)
            except ValueError as exc:
                raise ApiError(400, f"prompt_name: {exc}", param="prompt_name") from exc
        try:
            if body.token_ids is not None:
                if instruction:
                    field = "instruction" if body.prompt_name is None else "prompt_name"
                    raise ApiError(400, f"{field} applies to text inputs; token-id inputs carry their own tokens",
                                   param=field)
                tokenized = encoder.tokenize_ids(body.token_ids, truncate=config.truncate)
            else:
                _check_unicode(body.texts, instruction)
                items = [[instruction, text] for text in body.texts] if instruction else body.texts
                tokenized = await run_in_threadpool(encoder.tokenize, items, truncate=config.truncate)
        except InputTooLongError as exc:
            raise ApiError(413, f"input is too long: {exc}", param="input") from exc
        except ValueError as exc:  # the schema admits only non-empty strings, so this is a token id
            raise ApiError(400, str(exc), param="input") from exc
        tokens = sum(len(t.input_ids) for t in tokenized)
        busy = {"Retry-After": str(config.retry_after_s)}
        try:
            vectors = await batcher.embed(tokenized, body.dimensions)
        except QueueFullError as exc:
            raise ApiError(429, str(exc), headers=busy) from exc
        except BatcherClosedError as exc:
            raise ApiError(503, str(exc), headers=busy) from exc
        except Exception as exc:  # the model's failure is reported to this request only
            raise ApiError(500, f"encoding failed: {type(exc).__name__}: {exc}") from exc
        return JSONResponse({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
                     for i, v in enumerate(vectors)],
            "model": config.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })

    @app.post("/tokenize", dependencies=[Depends(_authorize)])
    async def tokenize(body: TokenizeRequest) -> JSONResponse:
        """TEI's ``/tokenize``: each input's tokens as the server counts them for ``/v1/embeddings``
        (special tokens included), with their ids and text."""
        texts = body.texts
        _check_unicode(texts, None)
        tokenized = await run_in_threadpool(encoder.tokenize, texts, truncate=config.truncate)
        special = set(encoder.tokenizer.all_special_ids)
        return JSONResponse([[{"id": token, "text": encoder.tokenizer.convert_ids_to_tokens(token),
                               "special": token in special} for token in item.input_ids] for item in tokenized])

    @v1.get("/models")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": config.model_name, "object": "model", "created": 0,
                                            "owned_by": "bivec", "dimensions": encoder.dim}]}

    app.include_router(v1)

    if keyed:
        @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(_authorize)])
        async def openapi() -> dict:
            return app.openapi()

    @app.get("/health")
    async def health() -> JSONResponse:
        ready = batcher.running
        body = {"status": "ok" if ready else "unavailable", "model": config.model_name, "dimensions": encoder.dim,
                "queued_texts": batcher.queued_texts}
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def _check_unicode(texts: list[str], instruction: str | None) -> None:
    """JSON's \\ud800-style escapes can carry lone surrogates, which are not text: refuse them by name."""
    fields = [(f"input[{i}]", t) for i, t in enumerate(texts)] + ([("instruction", instruction)] if instruction else [])
    for name, text in fields:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ApiError(400, f"{name} is not valid Unicode: a lone surrogate (U+{ord(text[exc.start]):04X}) at "
                                f"character {exc.start}", param=name.split("[")[0]) from None


def _encode_vector(vector: np.ndarray, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        # The OpenAI client decodes base64 as little-endian float32.
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()
