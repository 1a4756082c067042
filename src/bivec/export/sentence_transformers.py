"""Export an :class:`~bivec.Encoder` as a sentence-transformers (6.x) model directory.

The directory uses stock sentence-transformers modules only, so ``SentenceTransformer(out)``
loads it without ``trust_remote_code`` (sentence-transformers 6 refuses any other module class
without it) and without bivec installed:

- ``Transformer``: the merged weights, with ``is_causal: false`` (and Gemma's
  ``use_bidirectional_attention``) in ``config.json`` for a bidirectional encoder (a causal one,
  such as bivec's shipped default, keeps its model's causal config). transformers >= 5.2 forwards
  ``config.is_causal`` to the attention functions on every forward call, so a plain load attends
  bidirectionally with SDPA even when a batch has no padding. This is version-dependent, so the
  export reloads the directory and proves it (:func:`~bivec.attention.check_bidirectional`)
  instead of trusting it. The modality is pinned to plain text: sentence-transformers would
  otherwise route texts through the tokenizer's chat template.
- ``WordWeights``: weight 0 for the special tokens the tokenizer adds around a text (BOS, ...), 1
  for every other token, so mean pooling covers the text's tokens only, as bivec's pooling mask does.
- ``Pooling`` (mean; weighted mean when the tokenizer adds no token; last/first token when it adds
  nothing on that side), and ``Normalize`` when asked.

Named prompts (``encoder.prompts``) are exported as sentence-transformers prompts with a
``Pooling(include_prompt=False)``, which is LLM2Vec's "instruction seen, not pooled", when bivec
puts an instruction before the text as a plain prefix; when it wraps instructed inputs in the
tokenizer's chat template, no stock module can do the same, and the export says so
(:func:`prompt_export_problem`) and leaves the prompts out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bivec.attention import check_bidirectional, is_bidirectional
from bivec.encoder import Encoder

# bivec pooling -> sentence-transformers Pooling mode, for the modes an export reproduces exactly.
_POOLING = {"mean": "mean", "weighted_mean": "weightedmean", "last": "lasttoken", "first": "cls"}
_PROBE = [
    "A man is playing a guitar.",
    "The stock market fell sharply today, and investors sold their shares.",
    "a dog",
]
_TEXT_ONLY = {"text": {"method": "forward", "method_output_name": "last_hidden_state"}}


class ExportError(ValueError):
    """An encoder that cannot be written as a sentence-transformers model with the same vectors."""


def _added_tokens(encoder: Encoder) -> tuple[list[int], list[int]]:
    """The token ids the tokenizer puts before and after a text (BOS, EOS, ...)."""
    tokenizer = encoder.tokenizer
    probe = "probe text"
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe)["input_ids"]
    start = next((i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain), None)
    if start is None:
        raise ExportError("the tokenizer's special tokens change how the text itself is tokenised; cannot export")
    return full[:start], full[start + len(plain):]


def _pooling_mode(encoder: Encoder) -> tuple[str, list[int]]:
    """The sentence-transformers pooling mode that reproduces the encoder's, and the ids of the
    tokens the tokenizer adds around a text."""
    prefix, suffix = _added_tokens(encoder)
    mode = _POOLING.get(encoder.pooling)
    # sentence-transformers counts weighted mean's positions from the first token it is given, and
    # WordWeights does not renumber them: the tokens a tokenizer adds would shift every weight.
    if mode is None or {"last": suffix, "first": prefix, "weighted_mean": prefix + suffix}.get(encoder.pooling):
        raise ExportError(
            f"{encoder.pooling!r} pooling has no exact sentence-transformers equivalent for this tokenizer; "
            "export supports mean pooling, last/first when the tokenizer adds no token on that side, and "
            "weighted_mean when it adds none"
        )
    return mode, sorted(set(prefix + suffix))


def prompt_export_problem(encoder: Encoder) -> str | None:
    """Why the encoder's prompts cannot be exported, or None when they can (or it has none)."""
    if not encoder.prompts:
        return None
    if encoder.wraps_instructions:
        return ("prompts not exported: bivec wraps an instructed input in the tokenizer's chat template (the "
                "prompt inside a user turn, the text after it, the template's end after the text), while a "
                "sentence-transformers prompt is a plain prefix; use bivec for instructed inputs")
    if encoder.pooling == "weighted_mean":
        return ("prompts not exported: sentence-transformers' weighted mean left out of pooling counts a text "
                "token's position weight from the prompt's first token, bivec's from the text's; use bivec for "
                "instructed inputs")
    if any(_added_tokens(encoder)):
        return ("prompts not exported: the tokenizer adds special tokens around each text, which bivec leaves out "
                "of pooling with a WordWeights module, and sentence-transformers' mean pooling then counts the "
                "prompt's tokens in its denominator (include_prompt=False masks them only in the sum); use bivec "
                "for instructed inputs")
    return None


def _exported_prompts(encoder: Encoder) -> dict[str, str]:
    if prompt_export_problem(encoder) is not None:
        return {}
    # bivec formats "{instruction} {text}": the prefix carries the separating space.
    return {name: f"{prompt} " if prompt else "" for name, prompt in encoder.prompts.items()}


def _modules(encoder: Encoder, out: Path, mode: str, added: list[int], normalize: bool) -> list:
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling, WordWeights

    transformer = Transformer(str(out), max_seq_length=encoder.max_length, modality_config=_TEXT_ONLY,
                              module_output_name="token_embeddings")
    transformer.tokenizer.padding_side = "right"
    modules = [transformer]
    if mode == "mean" and added:
        vocab = encoder.tokenizer.convert_ids_to_tokens(list(range(len(encoder.tokenizer))))
        weights = WordWeights(vocab=vocab, word_weights={vocab[i]: 0.0 for i in added}, unknown_word_weight=1.0)
        # WordWeights matches by token string (and its lower case): make sure only the added ids got 0.
        if sorted(np.flatnonzero(weights.emb_layer.weight.detach().numpy()[:, 0] == 0).tolist()) != added:
            raise ExportError(f"tokens {[vocab[i] for i in added]} share their spelling with other vocabulary "
                              "entries, so they cannot be left out of pooling by WordWeights")
        modules.append(weights)
    modules.append(Pooling(encoder.dim, pooling_mode=mode, include_prompt=not _exported_prompts(encoder)))
    if normalize:
        modules.append(Normalize())
    return modules


def export_sentence_transformers(
    encoder: Encoder, out: str | Path, *, normalize: bool = False, verify: bool = True, atol: float | None = None
) -> Path:
    """Write ``encoder`` as a sentence-transformers model directory at ``out``.

    ``SentenceTransformer(out).encode(texts)`` then gives ``encoder.encode(texts, normalize=normalize)``
    for plain texts (no instruction). With ``verify`` (default) the directory is reloaded with plain
    sentence-transformers, its attention proven bidirectional and its vectors compared with bivec's
    on a padded batch and a single text; any difference raises :class:`ExportError`.

    Example:
        >>> encoder = Encoder.from_pretrained("McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp",
        ...     adapters=["McGill-NLP/LLM2Vec-Sheared-LLaMA-mntp-unsup-simcse"])  # doctest: +SKIP
        >>> export_sentence_transformers(encoder, "sheared-llama-st")  # doctest: +SKIP
    """
    from sentence_transformers import SentenceTransformer

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"output directory {str(out)!r} is not empty; choose a new directory")
    if encoder.chat_template:
        raise ExportError("the encoder wraps every input in the chat template (chat_template=True), which a "
                          "sentence-transformers Transformer module does not do for plain texts")
    positions = getattr(encoder.model.config.get_text_config(), "max_position_embeddings", None)
    if isinstance(positions, int) and 0 < positions < encoder.max_length:
        raise ExportError(f"max_length={encoder.max_length} exceeds the model's {positions} positions, where "
                          f"sentence-transformers would cut texts; load the encoder with max_length <= {positions}")
    if encoder.padding_side != "right":
        raise ExportError("export needs right padding: sentence-transformers passes no position ids")
    if encoder.echo:
        raise ExportError("the encoder reads each text twice and pools the second copy (echo), which no stock "
                          "sentence-transformers module does; export it without echo (bivec convert --no-echo, or "
                          "echo=False when loading), whose vectors differ, or serve it with bivec")
    mode, added = _pooling_mode(encoder)
    out.mkdir(parents=True, exist_ok=True)
    encoder.model.save_pretrained(out)
    encoder.tokenizer.save_pretrained(out)
    model = SentenceTransformer(modules=_modules(encoder, out, mode, added, normalize),
                                prompts=_exported_prompts(encoder) or None)
    model.save(str(out))
    del model
    if verify:
        verify_export(encoder, out, normalize=normalize, atol=atol)
    return out


def verify_export(encoder: Encoder, out: str | Path, *, normalize: bool = False, atol: float | None = None) -> None:
    """Reload ``out`` with plain sentence-transformers and check that its attention is bidirectional
    (when the encoder's is) and its vectors equal ``encoder``'s, for a padded batch and for one
    unpadded text."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(out), device=str(encoder.device))
    if is_bidirectional(encoder.model):
        check_bidirectional(model[0].auto_model)
    if atol is None:
        atol = 1e-4 if encoder.model.dtype == torch.float32 else 3e-2
    names = [None, *(name for name, prompt in _exported_prompts(encoder).items() if prompt)]
    for texts in (_PROBE, _PROBE[1:2]):
        for name in names:
            expected = encoder.encode(texts, normalize=normalize, prompt_name=name)
            got = model.encode(texts, batch_size=len(texts), convert_to_numpy=True, prompt_name=name)
            error = float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-6))
            if not error <= atol:
                with_prompt = f" with prompt {name!r}" if name else ""
                raise ExportError(
                    f"the sentence-transformers model in {out} does not reproduce bivec's vectors{with_prompt} "
                    f"({len(texts)} text(s): relative difference {error:.2e} > {atol:.0e})"
                )
