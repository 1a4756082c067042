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

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, strict=True)
    instruction: str | None = Field(default=None, description="Seen by the model but not pooled (LLM2Vec queries).")
    prompt_name: str | None = Field(default=None, description="One of the model's named prompts (TEI's prompt_name).")
    user: str | None = Field(default=None, description="Accepted for compatibility; unused.")

    @field_validator("input", mode="before")
    @classmethod
    def _check_input(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                raise ValueError("input is an empty string")
            return value
        if not isinstance(value, list):
            raise ValueError(f"input must be a string, a list of strings or token ids, got {_json_type(value)}")
        if not value:
            raise ValueError("input is an empty list")
        if all(_is_id(item) for item in value):
            return value
        if all(isinstance(item, list) for item in value):
            for i, ids in enumerate(value):
                if not ids or not all(_is_id(t) for t in ids):
                    raise ValueError(f"input[{i}] must be a non-empty list of token ids (integers)")
            return value
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"input[{i}] must be a string like the other items, got {_json_type(item)}")
            if not item.strip():
                raise ValueError(f"input[{i}] is an empty string")
        return value

    @property
    def token_ids(self) -> list[list[int]] | None:
        """The inputs as token-id lists, or None for text inputs."""
        if isinstance(self.input, str) or not isinstance(self.input[0], (int, list)):
            return None
        return [list(self.input)] if isinstance(self.input[0], int) else [list(ids) for ids in self.input]

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class TokenizeRequest(BaseModel):
    """``POST /tokenize`` (text-embeddings-inference's shape): ``inputs`` is a text or a list of texts.

    Example:
        >>> TokenizeRequest(inputs="a text").texts
        ['a text']
    """

    model_config = ConfigDict(extra="forbid")

    inputs: str | list[str]

    @field_validator("inputs", mode="before")
    @classmethod
    def _check_inputs(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(t, str) and t.strip() for t in items):
            raise ValueError("inputs must be a non-empty string or a non-empty list of non-empty strings")
        return value

    @property
    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else list(self.inputs)
