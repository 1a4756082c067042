"""The bidirectional model exported to ONNX (once, into bivec's cache), and ONNX Runtime over it."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

from bivec.attention import is_bidirectional, last_hidden_state
from bivec.backends import BackendUnavailable, Forward

# Bump when the exported graph changes, so stale exports are rebuilt rather than trusted.
_FORMAT = "onnx-v2"
_OPSET = 18


class _HiddenStates(nn.Module):
    """What a backend computes: bivec's forward (positions from the mask, symmetric windows)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return last_hidden_state(self.model, input_ids, attention_mask)


def weights_hash(model: nn.Module) -> str:
    """sha256 of the model's config, attention mode and every weight's bytes: an export is reused
    only for the same weights."""
    digest = hashlib.sha256(json.dumps([_FORMAT, torch.__version__, is_bidirectional(model)]).encode())
    digest.update(model.config.to_json_string().encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().view(torch.uint8).numpy())
    return digest.hexdigest()[:24]


def exported_model(model: nn.Module, *, int8: bool = False, digest: str | None = None) -> Path:
    """The ONNX file of ``model`` (float32, or with int8 weights), exported on first use into
    ``<cache>/onnx/<weights hash>/``; ``digest`` is :func:`weights_hash` of ``model`` when the
    caller already knows it (reading every weight costs a minute on a 7B model)."""
    from bivec.runtime import cache_dir

    if next(model.parameters()).dtype != torch.float32:
        raise BackendUnavailable("the ONNX export needs the model in float32 (load it with dtype='float32')")
    folder = cache_dir() / "onnx" / (digest or weights_hash(model))
    path = folder / "model.onnx"
    if not path.is_file():
        _export(model, folder)
    if not int8:
        return path
    quantized = folder / "model-int8.onnx"
    if not quantized.is_file():
        quantize(path, quantized)
    return quantized


def _export(model: nn.Module, folder: Path) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    ids = torch.full((2, 8), 1, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # a padded row, so the traced mask handling is the general one
    axes = {0: "batch", 1: "tokens"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter: seconds instead of the dynamo exporter's minutes, and its
            # graphs are the ones ONNX Runtime's fusions know.
            torch.onnx.export(_HiddenStates(model).eval(), (ids, mask), str(tmp / "exported.onnx"),
                              input_names=["input_ids", "attention_mask"], output_names=["hidden"],
                              dynamic_axes={"input_ids": axes, "attention_mask": axes, "hidden": axes},
                              opset_version=_OPSET, dynamo=False)
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BackendUnavailable(f"the ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc
    _fuse(tmp / "exported.onnx", tmp / "model.onnx", model.config.get_text_config())
    (tmp / "exported.onnx").unlink()
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def _fuse(source: Path, target: Path, config) -> None:
    """ONNX Runtime's transformer optimiser on the exported graph: on Llama-style decoders it fuses
    each residual add with the RMSNorm after it (SkipSimplifiedLayerNormalization), about 10% faster
    on a 2-core Xeon, exact. Without onnxruntime the plain export is kept."""
    try:
        import onnxruntime  # noqa: F401  (the optimiser needs it at run time, not only at import)
        from onnxruntime.transformers import optimizer
    except ImportError:
        shutil.copy(source, target)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fused = optimizer.optimize_model(str(source), model_type="gpt2", num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size, opt_level=1)
    fused.save_model_to_file(str(target), use_external_data_format=source.stat().st_size > 2**31 - 2**20)


def quantize(source: Path, target: Path, keep_float: list[str] | None = None) -> None:
    """Dynamic int8: weights per output channel, activations per batch (ONNX Runtime's scheme);
    the MatMul nodes named in ``keep_float`` stay float32."""
    try:
        from onnx import TensorProto
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed (pip install 'bivec[onnx]')") from exc
    tmp = target.with_name(target.name + ".tmp")
    # The fused norms are ONNX Runtime's own ops, which ONNX's shape inference cannot type.
    quantize_dynamic(source, tmp, per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=keep_float or [],
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})
    tmp.rename(target)


def onnxruntime_forward(path: Path) -> Forward:
    """A forward over the ONNX file with ONNX Runtime's CPU provider, all graph optimisations on."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed (pip install 'bivec[onnx]')") from exc
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise BackendUnavailable(f"ONNX Runtime could not load the model ({type(exc).__name__}: {exc})") from exc

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        return torch.from_numpy(session.run(["hidden"], feeds)[0])

    return forward
