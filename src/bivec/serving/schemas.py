"""Request body of ``POST /v1/embeddings`` (the OpenAI embeddings API, plus ``instruction``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


class EmbeddingRequest(BaseModel):
    """What a client may send; unknown fields are refused rather than ignored.

    Example:
        >>> EmbeddingRequest(input=["a text", "another"], model="bivec", dimensions=64).texts
        ['a text', 'another']
    """

    model_config = ConfigDict(extra="forbid")

    input: str | list[str]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, strict=True)
    instruction: str | None = Field(default=None, description="Seen by the model but not pooled (LLM2Vec queries).")
    user: str | None = Field(default=None, description="Accepted for compatibility; unused.")

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("input is an empty string")
            return value
        if not isinstance(value, list):
            raise ValueError(f"input must be a string or a list of strings, got {_json_type(value)}")
        if not value:
            raise ValueError("input is an empty list")
        for i, item in enumerate(value):
            if isinstance(item, (int, list)) and not isinstance(item, bool):
                raise ValueError(f"input[{i}] is {_json_type(item)}: token-id inputs are not supported, send text")
            if not isinstance(item, str):
                raise ValueError(f"input[{i}] must be a string, got {_json_type(item)}")
            if not item.strip():
                raise ValueError(f"input[{i}] is an empty string")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)
