"""Encoder: texts (optionally with instructions) in, one float32 vector per text out."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from bivec import precision
from bivec.attention import last_hidden_state, make_bidirectional
from bivec.backends import BackendChoice, check_backend_name
from bivec.backends import attach as attach_backend
from bivec.models.checkpoint import DEFAULT_SETTINGS, EncoderSettings, load_model, resolve_checkpoint
from bivec.models.loading import load_tokenizer, resolve_device
from bivec.pooling import check_pooling_mode, pool
from bivec.runtime import keep_freed_memory

EncodeInput = str | Sequence[str]
_SENTINEL = "\x00bivec-text\x00"
# Padded tokens per forward pass. On CPUs the activations of bigger batches leave the caches:
# benchmarks/encode_vs_reference.py measured 2,048 at twice the speed of 16,384 on 512-token texts.
_CPU_BATCH_TOKENS = 2048
_GPU_BATCH_TOKENS = 16384
# The fixed cost of one forward pass (dispatch, per-layer overheads) in padded tokens' worth of
# work, which keeps batch cutting from trading a little padding for many small batches. It is
# higher where tokens are cheaper. On a 2-core Xeon these cuts beat greedy ones by 6% (short
# texts) and 11% (paragraphs) in float32, and by 7% and 1% in bfloat16. int8 models keep float32
# embeddings and take the float32 cost, which measured 8-12% faster for them than the bfloat16 one.
_PASS_COST_TOKENS_FP32 = 50
_PASS_COST_TOKENS_REDUCED = 150
# Texts per forward pass at most; the token budget above is the bound that matters. Short texts need
# many per pass to fill the matrix multiplies: on the benchmark's 12-token sentences 128 beat 32 by
# 12-14% in bfloat16 and by 1-6% in float32, whose slower multiplies are efficient at smaller sizes.
DEFAULT_BATCH_SIZE = 128


@dataclass(frozen=True)
class Tokenized:
    """One input after formatting and tokenisation; ``pooling_mask`` marks the text's tokens, and
    ``truncated`` says whether the text was cut to fit ``max_length``."""

    input_ids: list[int]
    pooling_mask: list[int]
    truncated: bool = False


class InputTooLongError(ValueError):
    """An input does not fit in ``max_length`` tokens and truncation is off (or it leaves no text).

    ``index`` says which input and ``reason`` why, so that a caller can word it for its own inputs;
    the message reads ``inputs[index] reason``.

    Example:
        >>> str(InputTooLongError(3, "has 9 tokens, more than max_length=8 tokens"))
        'inputs[3] has 9 tokens, more than max_length=8 tokens'
    """

    def __init__(self, index: int, reason: str):
        super().__init__(f"inputs[{index}] {reason}")
        self.index, self.reason = index, reason

    def __reduce__(self):
        return type(self), (self.index, self.reason)


def length_limit(max_length: int, echo: bool) -> str:
    """How messages name an encoder's length limit, saying when echo spends it on two copies of each text."""
    return f"max_length={max_length} tokens" + (" (echo reads each text twice)" if echo else "")


def cut_note(cut: int, total: int, what: str, max_length: int, echo: bool) -> str:
    """What encoding and training say of the ``cut`` of ``total`` inputs (``what``) they cut to fit.

    Example:
        >>> cut_note(2, 5, "texts", 8, echo=True)
        '2 of 5 texts longer than max_length=8 tokens (echo reads each text twice), cut to fit'
    """
    return f"{cut} of {total} {what} longer than {length_limit(max_length, echo)}, cut to fit"


def _validate(inputs: EncodeInput | Sequence[EncodeInput]) -> list[tuple[str, str]]:
    """Normalise to (instruction, text) pairs, naming the first bad item in the error."""
    if isinstance(inputs, str):
        inputs = [inputs]
    if not isinstance(inputs, Sequence):
        raise ValueError(
            f"inputs must be a string or a list of strings / [instruction, text] pairs, got {type(inputs).__name__}"
        )
    items = []
    for i, item in enumerate(inputs):
        if isinstance(item, str):
            instruction, text = "", item
        elif isinstance(item, Sequence) and not isinstance(item, (bytes, bytearray)):
            if len(item) != 2:
                raise ValueError(f"inputs[{i}] has {len(item)} items; a pair must be [instruction, text]")
            instruction, text = item
            for j, (part, value) in enumerate((("instruction", instruction), ("text", text))):
                if not isinstance(value, str):
                    raise ValueError(f"inputs[{i}][{j}] ({part}) is {type(value).__name__}, expected str")
        else:
            raise ValueError(
                f"inputs[{i}] is {type(item).__name__}; expected a string or an [instruction, text] pair"
            )
        if not text.strip():
            raise ValueError(f"inputs[{i}] has an empty text")
        items.append((instruction.strip(), text))
    return items


def plan_batches(lengths: list[int], batch_size: int, max_batch_tokens: int,
                 pass_cost: float = _PASS_COST_TOKENS_FP32) -> list[list[int]]:
    """Indices sorted longest first, cut into runs of at most ``batch_size`` texts and
    ``max_batch_tokens`` padded tokens (a longer text goes alone), at the cut points that minimise
    padded tokens plus ``pass_cost`` tokens per forward pass (dynamic programming). Cutting
    greedily instead left 7% padding on short sentences and 10% on paragraphs, against 2-3%.

    Example:
        >>> plan_batches([100, 2, 100, 2, 100, 2, 2, 2], batch_size=4, max_batch_tokens=1000)
        [[0, 2, 4], [1, 3, 5, 6], [7]]
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    widths = [lengths[i] for i in order]
    cost = [0.0] + [float("inf")] * len(order)
    start = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for first in range(end - 1, max(0, end - batch_size) - 1, -1):
            # Sorted longest first, so the batch's first text fixes its padded width.
            padded = widths[first] * (end - first)
            if padded > max_batch_tokens and end - first > 1:
                break
            if cost[first] + padded + pass_cost < cost[end]:
                cost[end], start[end] = cost[first] + padded + pass_cost, first
    batches, end = [], len(order)
    while end:
        batches.append(order[start[end] : end])
        end = start[end]
    return batches[::-1]


class Encoder:
    """A decoder LLM used as a text encoder: bidirectional attention and pooling.

    Example:
        >>> import bivec
        >>> encoder = bivec.Encoder.from_pretrained()  # the embedded default model  # doctest: +SKIP
        >>> vectors = encoder.encode(["A man plays a guitar.",
        ...                           ["Retrieve similar sentences:", "Someone makes music."]],
        ...                          normalize=True)  # doctest: +SKIP
        >>> vectors.shape  # doctest: +SKIP
        (2, 576)
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        pooling: str = "mean",
        max_length: int = 512,
        chat_template: bool | None = None,
        padding_side: str = "right",
        prompts: dict[str, str] | None = None,
        echo: bool = False,
    ) -> None:
        """Wrap an already loaded model; ``chat_template=None`` wraps only inputs that carry an
        instruction in the tokenizer's chat template, True wraps every input, False none.
        ``prompts`` are named instructions (``{"query": "...", "document": ""}``) that
        ``encode(prompt_name=...)``, :meth:`encode_query` and :meth:`encode_document` use.
        ``echo=True`` gives the model each text twice (``"{text} {text}"``) and pools the second
        copy, whose tokens have all read the whole text even under causal attention (echo
        embeddings, Springer et al., 2024); a text too long for two copies keeps its beginning."""
        if max_length < 1:
            raise ValueError(f"max_length must be positive, got {max_length}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if chat_template and not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_template=True but the tokenizer has no chat template")
        self.model = model
        self.tokenizer = tokenizer
        self.pooling = check_pooling_mode(pooling)
        self.max_length = max_length
        self.chat_template = chat_template
        self.prompts = dict(prompts or {})
        self.echo = echo
        self.padding_side = padding_side
        self._template = self._template_parts()
        keep_freed_memory(self.device.type)
        # Set by from_pretrained(dtype="auto"): the dtype check's verdict.
        self.precision: precision.PrecisionChoice | None = None
        # Set by from_pretrained(backend=...): the forward of another engine (None: torch) and its check.
        self.backend_forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        self.backend_choice: BackendChoice | None = None

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path | None = None,
        *,
        adapters: Sequence[str | Path] = (),
        bidirectional: bool | None = None,
        pooling: str | None = None,
        max_length: int | None = None,
        dtype: str | torch.dtype | None = "auto",
        device: str | torch.device | None = None,
        attn_implementation: str | None = "sdpa",
        chat_template: bool | None = None,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        compile: bool = False,
        backend: str = "torch",
        echo: bool | None = None,
    ) -> Encoder:
        """Load a local model directory (``None``: the embedded default model), or a published
        LLM2Vec directory whose MNTP adapter names its base, then merge ``adapters`` in order.

        ``pooling``, ``max_length``, ``bidirectional`` and ``echo`` (see :class:`Encoder`) default to
        the checkpoint's ``llm2vec_config.json`` / ``bivec_config.json``, else mean, 512,
        bidirectional and no echo; an argument given wins. Weights load from safetensors only unless
        ``allow_pickle``; code shipped with a model runs only with ``trust_remote_code``.

        ``dtype="auto"`` picks the fastest dtype whose embeddings pass bivec's accuracy check
        against float32 on this machine (see :mod:`bivec.precision`; measured once per machine and
        model, then cached; the verdict is in ``encoder.precision``); ``None`` is float32 on the CPU
        and bfloat16 on CUDA without a check; or name one: float32, bfloat16, float16 (unchecked), or
        ``int8`` (CPU only: see :mod:`bivec.int8`; checked like ``auto``'s candidates, keeping as
        many leading layers in float32 as the check needs, or all of them when int8 cannot pass). ``compile=True`` runs :meth:`compile` (after the
        dtype check, which runs uncompiled).

        ``backend``: ``"torch"``, or an engine over the model exported to ONNX (float32 weights,
        adapters merged): ``"onnx"`` (ONNX Runtime), ``"openvino"``, ``"onnx-int8"``, or
        ``"auto"``, the fastest that passes bivec's check against torch float32 on this machine
        (see :mod:`bivec.backends`; the verdict is in ``encoder.backend_choice``).

        Example:
            >>> encoder = Encoder.from_pretrained("McGill-NLP/LLM2Vec-Mistral-7B-Instruct-v2-mntp",
            ...     adapters=["McGill-NLP/LLM2Vec-Mistral-7B-Instruct-v2-mntp-supervised"])  # doctest: +SKIP
        """
        checkpoint = resolve_checkpoint(path, adapters, allow_pickle=allow_pickle)
        settings = DEFAULT_SETTINGS.override(checkpoint.settings).override(
            EncoderSettings(pooling, max_length, bidirectional, echo=echo)
        )
        bidirectional = settings.bidirectional
        pooling = check_pooling_mode(settings.pooling)
        device = resolve_device(device)
        tokenizer = load_tokenizer(checkpoint.tokenizer, trust_remote_code=trust_remote_code)

        backend = check_backend_name(backend)
        if backend != "torch":
            if compile:
                raise ValueError(f"compile=True compiles the torch model; backend={backend!r} runs another engine")
            if dtype not in (None, "auto", "float32", torch.float32):
                raise ValueError(f"backend={backend!r} runs the model exported in float32 (int8: backend='onnx-int8'); "
                                 f"dtype={dtype!r} applies to the torch backend")
            dtype = torch.float32
        if isinstance(dtype, str):
            dtype = dtype.lower()
        if dtype == "int8" and device.type != "cpu":
            raise ValueError(f"dtype='int8' runs on the CPU only, not on {device}")

        def build(dtype: str | torch.dtype | None, float_layers: int | None = None) -> Encoder:
            int8 = dtype == "int8"
            model = load_model(checkpoint, device=device, dtype=torch.float32 if int8 else dtype,
                               attn_implementation=attn_implementation, allow_pickle=allow_pickle,
                               trust_remote_code=trust_remote_code)
            if bidirectional:
                make_bidirectional(model)
            encoder = cls(model, tokenizer, pooling=pooling, max_length=settings.max_length, chat_template=chat_template,
                          prompts=settings.prompts, echo=settings.echo)
            if int8:
                precision.prepare_int8(encoder).keep(float_layers)
            return encoder

        if dtype in ("auto", "int8"):
            # int8 is checked like auto's candidates: an explicit int8 keeps the fewest float32
            # layers that pass, and falls back to float32 when none does.
            tried = precision.candidates(device) if dtype == "auto" else ["int8"]
            key = precision.cache_key({
                "machine": precision.machine_description(device), "candidates": tried,
                "model": precision.model_file_stats(checkpoint),
                "bidirectional": bidirectional, "pooling": pooling, "max_length": settings.max_length,
                "echo": settings.echo, "attn_implementation": attn_implementation, "chat_template": chat_template,
            })
            choice = precision.load_cached(key)
            if choice is not None:
                encoder = build(choice.dtype, choice.float_layers)
            else:
                encoder, choice = precision.choose(build, device, tried, faster_only=dtype == "auto")
                precision.store(key, choice)
            if dtype == "int8" and choice.dtype != "int8":
                print(f"bivec: int8 does not pass the accuracy check on this model; using float32 ({choice.describe()})",
                      file=sys.stderr)
            encoder.precision = choice
        else:
            encoder = build(dtype)
        if backend != "torch":
            attach_backend(encoder, backend, precision.cache_key({
                "machine": precision.machine_description(device), "backend": backend,
                "model": precision.model_file_stats(checkpoint),
                "bidirectional": bidirectional, "attn_implementation": attn_implementation,
            }))
        return encoder.compile() if compile else encoder

    def compile(self) -> Encoder:
        """Compile the model with ``torch.compile`` and warm it up; returns the encoder.

        Only the repeated blocks are compiled (accelerate's regional compilation: one block's code
        serves every layer), with dynamic shapes, so it costs seconds rather than minutes, once per
        process, and batches of any shape reuse it. Fusing the element-wise work between the
        matrix products is what it buys: ``benchmarks/encode_ablation.py`` measures the gain. The
        warm-up encodes a few texts so that a missing C++ compiler or an unsupported model fails
        here, with the model left uncompiled, instead of on the first real batch.

        Example:
            >>> encoder = Encoder.from_pretrained().compile()  # doctest: +SKIP
        """
        from accelerate.utils import compile_regions

        if getattr(self.model, "_bivec_compiled", False):
            return self
        eager = self.model
        self.model = compile_regions(eager, dynamic=True)
        try:
            # One batch of one text, one without padding and one with: each is a graph of its own.
            for texts in (["warm up"], ["warm up", "warm up"], ["warm", "warm up the compiled model"]):
                self.encode(texts, show_progress=False)
        except Exception as exc:
            self.model = eager
            raise RuntimeError(
                f"torch.compile could not build this model on {self.device} ({type(exc).__name__}: "
                f"{(str(exc).strip().splitlines() or ['no message'])[0]}); encode without compile (on the "
                "CPU it needs a working C++ compiler)"
            ) from exc
        self.model._bivec_compiled = True
        return self

    @property
    def wraps_instructions(self) -> bool:
        """Whether instructed inputs go through the tokenizer's chat template (else an instruction
        is a plain prefix: ``"{instruction} {text}"``)."""
        return self._template is not None

    @property
    def dim(self) -> int:
        """Size of the embeddings."""
        return int(self.model.config.get_text_config().hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _template_parts(self) -> tuple[str, str] | None:
        if self.chat_template is False or not getattr(self.tokenizer, "chat_template", None):
            return None
        rendered = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": _SENTINEL}], tokenize=False, add_generation_prompt=False
        )
        prefix, found, suffix = rendered.partition(_SENTINEL)
        if not found:
            raise ValueError("the tokenizer's chat template does not render the user message's content")
        return prefix, suffix

    def _format(self, instruction: str, text: str) -> tuple[str, int, int, bool]:
        """The string to tokenise, the character span of the text in it, and whether it is a
        template rendering (which carries its own special tokens)."""
        head = f"{instruction} " if instruction else ""
        if self.echo:
            head += f"{text} "
        if self.pooling == "eos" and self.tokenizer.eos_token:
            text = text + self.tokenizer.eos_token
        wrap = self._template is not None and (self.chat_template or bool(instruction))
        prefix, suffix = self._template if wrap else ("", "")
        start = len(prefix) + len(head)
        return prefix + head + text + suffix, start, start + len(text), wrap

    def tokenize(self, inputs: EncodeInput | Sequence[EncodeInput], *, truncate: bool = True,
                 prompt_name: str | None = None) -> list[Tokenized]:
        """Format and tokenise ``inputs``, marking which tokens belong to each text.

        Texts longer than ``max_length`` tokens are cut at the end, or raise a ValueError when
        ``truncate=False``. ``prompt_name`` puts a named prompt before every plain text (:meth:`with_prompt`).

        Example:
            >>> sum(t.truncated for t in encoder.tokenize(["a text"], prompt_name="query"))  # doctest: +SKIP
            0
        """
        if prompt_name is not None:
            inputs = self.with_prompt(inputs, prompt_name)
        pairs = _validate(inputs)
        formatted = [self._format(instruction, text) for instruction, text in pairs]
        encoded = self._tokenize_formatted(formatted)
        cut_texts = set()
        if self.echo and truncate:
            for i, (ids, offsets) in enumerate(encoded):
                if len(ids) > self.max_length and (cut := self._echo_cut(ids, offsets, formatted[i])) is not None:
                    formatted[i] = self._format(pairs[i][0], pairs[i][1][:cut])
                    encoded[i] = self._tokenize_formatted([formatted[i]])[0]
                    cut_texts.add(i)
        out = []
        for i, ((ids, offsets), (_, start, end, _)) in enumerate(zip(encoded, formatted)):
            if len(ids) > self.max_length:
                cut_texts.add(i)
                if not truncate:
                    limit = length_limit(self.max_length, self.echo)
                    raise InputTooLongError(i, f"has {len(ids)} tokens, more than {limit}")
                ids, offsets = ids[: self.max_length], offsets[: self.max_length]
            mask = [int(b > a and b > start and a < end) for a, b in offsets]
            if not any(mask):
                raise InputTooLongError(i, f"keeps no text token within {length_limit(self.max_length, self.echo)} "
                                           "(the instruction or template fills it)")
            out.append(Tokenized(list(ids), mask, i in cut_texts))
        return out

    def tokenize_ids(self, token_ids: Sequence[Sequence[int]], *, truncate: bool = True) -> list[Tokenized]:
        """:meth:`tokenize` for inputs that are token ids: each is read as given and pooled as a text
        of those tokens would be (its special tokens left out). An echo encoder reads the ids, then
        their non-special tokens again, and pools the second copy; a sequence too long for both keeps
        its first half, as a text keeps its beginning.

        Ids outside the vocabulary raise a ValueError, and sequences longer than ``max_length`` an
        :class:`InputTooLongError` when ``truncate=False``.

        Example:
            >>> ids = encoder.tokenizer("a text")["input_ids"]  # doctest: +SKIP
            >>> encoder.encode_tokenized(encoder.tokenize_ids([ids]))  # doctest: +SKIP
        """
        vocab = self.model.get_input_embeddings().num_embeddings
        special = set(self.tokenizer.all_special_ids)
        out = []
        for i, ids in enumerate(token_ids):
            ids = list(ids)
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise ValueError(f"inputs[{i}]: token id {bad} is outside the vocabulary (0 to {vocab - 1})")
            length = len(ids) + (sum(t not in special for t in ids) if self.echo else 0)
            truncated = length > self.max_length
            if truncated:
                if not truncate:
                    limit = length_limit(self.max_length, self.echo)
                    raise InputTooLongError(i, f"has {length} tokens, more than {limit}")
                ids = ids[: self.max_length // 2 if self.echo else self.max_length]
            mask = [int(t not in special) for t in ids]
            mask = mask if any(mask) else [1] * len(ids)
            if self.echo:
                ids, mask = ids + [t for t, m in zip(ids, mask) if m], [0] * len(ids) + [1] * sum(mask)
            out.append(Tokenized(ids, mask, truncated))
        return out

    def _tokenize_formatted(self, formatted: list[tuple[str, int, int, bool]]) -> list[tuple[list[int], list]]:
        """Token ids and character offsets of each :meth:`_format` output; template renderings carry
        their own special tokens."""
        out: list = [None] * len(formatted)
        for wrapped in (False, True):
            group = [i for i, f in enumerate(formatted) if f[3] is wrapped]
            if not group:
                continue
            encoded = self.tokenizer([formatted[i][0] for i in group], add_special_tokens=not wrapped,
                                     return_offsets_mapping=True, return_attention_mask=False)
            for i, ids, offsets in zip(group, encoded["input_ids"], encoded["offset_mapping"]):
                out[i] = (list(ids), list(offsets))
        return out

    def _echo_cut(self, ids: list[int], offsets: list, formatted: tuple[str, int, int, bool]) -> int | None:
        """Where to cut an echoed text (in characters) so that both copies fit in max_length, from
        its too long tokenisation; None when not even one token of it fits twice."""
        _, start, end, _ = formatted
        second = [b for a, b in offsets if b > a and b > start and a < end]
        keep = (self.max_length - (len(ids) - 2 * len(second))) // 2
        return second[keep - 1] - start if keep >= 1 else None

    def _forward_batches(
        self, tokenized: list[Tokenized], batch_size: int, max_batch_tokens: int | None, show_progress: bool | None
    ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Run the model over length-sorted batches, yielding each batch's input indices, final
        hidden states, attention mask and pooling mask, with a progress bar."""
        if max_batch_tokens is None:
            max_batch_tokens = _CPU_BATCH_TOKENS if self.device.type == "cpu" else _GPU_BATCH_TOKENS
        if batch_size < 1 or max_batch_tokens < 1:
            raise ValueError(f"batch_size and max_batch_tokens must be positive, got {batch_size}, {max_batch_tokens}")
        fp32 = next(self.model.parameters()).dtype == torch.float32
        batches = plan_batches([len(t.input_ids) for t in tokenized], batch_size, max_batch_tokens,
                               _PASS_COST_TOKENS_FP32 if fp32 else _PASS_COST_TOKENS_REDUCED)
        if show_progress is None:
            show_progress = len(batches) > 1 and sys.stderr.isatty()
        from tqdm.auto import tqdm

        with torch.inference_mode(), tqdm(total=len(tokenized), disable=not show_progress, desc="encode", unit="text") as bar:
            for batch in batches:
                ids, attention, pooling_mask = self.collate([tokenized[i] for i in batch])
                hidden = (self.backend_forward(ids, attention) if self.backend_forward is not None
                          else last_hidden_state(self.model, ids, attention))
                yield batch, hidden, attention, pooling_mask
                bar.update(len(batch))

    def collate(self, items: list[Tokenized]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pad tokenised inputs into (input_ids, attention_mask, pooling_mask) on the model's device,
        on the encoder's padding side; training builds its batches with it too."""
        width = max(len(t.input_ids) for t in items)
        ids = np.full((len(items), width), self.tokenizer.pad_token_id, dtype=np.int64)
        attention = np.zeros((len(items), width), dtype=np.int64)
        pooling = np.zeros((len(items), width), dtype=np.int64)
        for row, t in enumerate(items):
            n = len(t.input_ids)
            cols = slice(width - n, width) if self.padding_side == "left" else slice(0, n)
            ids[row, cols] = t.input_ids
            attention[row, cols] = 1
            pooling[row, cols] = t.pooling_mask
        device = self.device
        return (torch.from_numpy(ids).to(device), torch.from_numpy(attention).to(device),
                torch.from_numpy(pooling).to(device))

    def token_states(
        self, tokenized: Sequence[Tokenized], *, batch_size: int = DEFAULT_BATCH_SIZE, max_batch_tokens: int | None = None,
        show_progress: bool | None = None,
    ) -> list[np.ndarray]:
        """Final hidden states (n_tokens, dim) of each already tokenised input, in input order,
        batched like :meth:`encode` but not pooled: for token-level uses such as word probes.

        Example:
            >>> items = encoder.tokenize(["a text"])  # doctest: +SKIP
            >>> encoder.token_states(items)[0].shape  # doctest: +SKIP
            (2, 576)
        """
        states: list[np.ndarray] = [np.empty(0)] * len(tokenized)
        for batch, hidden, attention, _ in self._forward_batches(tokenized, batch_size, max_batch_tokens, show_progress):
            hidden, keep = hidden.float().cpu().numpy(), attention.bool().cpu().numpy()
            for row, i in enumerate(batch):
                states[i] = hidden[row][keep[row]]
        return states

    def encode(
        self,
        inputs: EncodeInput | Sequence[EncodeInput],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int | None = None,
        normalize: bool = False,
        dimensions: int | None = None,
        show_progress: bool | None = None,
        truncate: bool = True,
        prompt_name: str | None = None,
    ) -> np.ndarray:
        """Embed ``inputs`` into a float32 array of shape (n, dim), in input order.

        ``inputs`` is a string, or a list whose items are strings or ``[instruction, text]``
        pairs; instruction tokens are seen by the model but left out of pooling. Batches hold at
        most ``batch_size`` texts and ``max_batch_tokens`` padded tokens (default: 2,048 on the
        CPU, where larger batches fall out of cache and run slower; 16,384 on a GPU). ``dimensions`` keeps
        only the first coordinates (Matryoshka-style), before ``normalize``. ``prompt_name`` puts
        one of the model's named prompts (``encoder.prompts``) before every plain text.

        Example:
            >>> encoder.encode(["first text", ["Represent the query:", "second text"]]).shape  # doctest: +SKIP
            (2, 576)
        """
        self._check_dimensions(dimensions)
        return self.encode_tokenized(self.tokenize(inputs, truncate=truncate, prompt_name=prompt_name),
                                     batch_size=batch_size, max_batch_tokens=max_batch_tokens, normalize=normalize,
                                     dimensions=dimensions, show_progress=show_progress)

    def prompt(self, prompt_name: str) -> str:
        """The instruction of the named prompt (``""`` for one that adds none, such as a document
        prompt); an unknown name is a ValueError naming the known ones.

        Example:
            >>> encoder.prompt("query")  # doctest: +SKIP
            'Given a web search query, retrieve relevant passages that answer the query'
        """
        if prompt_name not in self.prompts:
            known = ", ".join(map(repr, self.prompts)) or "none"
            raise ValueError(f"unknown prompt name {prompt_name!r}; this model's prompts: {known}")
        return self.prompts[prompt_name]

    def with_prompt(self, inputs: EncodeInput | Sequence[EncodeInput], prompt_name: str) -> list[EncodeInput]:
        """``inputs`` with the named prompt as the instruction of every plain text (an input that
        carries its own instruction keeps it); an unknown name is a ValueError naming the known ones."""
        prompt = self.prompt(prompt_name)
        items = [inputs] if isinstance(inputs, str) else list(inputs)
        return [[prompt, item] if prompt and isinstance(item, str) else item for item in items]

    def encode_query(self, inputs: EncodeInput | Sequence[EncodeInput], **kwargs) -> np.ndarray:
        """:meth:`encode` with the ``query`` prompt when the model has one (sentence-transformers' name)."""
        return self.encode(inputs, prompt_name="query" if "query" in self.prompts else None, **kwargs)

    def encode_document(self, inputs: EncodeInput | Sequence[EncodeInput], **kwargs) -> np.ndarray:
        """:meth:`encode` with the ``document`` prompt when the model has one."""
        return self.encode(inputs, prompt_name="document" if "document" in self.prompts else None, **kwargs)

    def _check_dimensions(self, dimensions: int | None) -> None:
        if dimensions is not None and not 1 <= dimensions <= self.dim:
            raise ValueError(f"dimensions must be between 1 and {self.dim}, got {dimensions}")

    def encode_tokenized(
        self,
        tokenized: Sequence[Tokenized],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_batch_tokens: int | None = None,
        normalize: bool = False,
        dimensions: int | None = None,
        show_progress: bool | None = None,
    ) -> np.ndarray:
        """:meth:`encode` for inputs already through :meth:`tokenize` or :meth:`tokenize_ids`, so that
        a caller who tokenised to count or check tokens does not tokenise twice.

        Example:
            >>> encoder.encode_tokenized(encoder.tokenize(["a text"])).shape  # doctest: +SKIP
            (1, 576)
        """
        self._check_dimensions(dimensions)
        dim = dimensions or self.dim
        result = np.zeros((len(tokenized), dim), dtype=np.float32)
        for batch, hidden, _, pooling_mask in self._forward_batches(tokenized, batch_size, max_batch_tokens, show_progress):
            vectors = pool(hidden, pooling_mask, self.pooling)[:, :dim].float()
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, dim=-1)
            result[batch] = vectors.cpu().numpy()
        return result
