"""OpenVINO over the exported ONNX file (OpenVINO reads ONNX directly), in float32."""

from __future__ import annotations

from pathlib import Path

import torch

from bivec.backends import BackendUnavailable, Forward


def openvino_forward(path: Path) -> Forward:
    """A forward with OpenVINO's CPU plugin. Its default inference precision on CPUs with AMX or
    AVX512-BF16 is bfloat16; bivec asks for float32, so that it is an exact backend."""
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailable("openvino is not installed (pip install 'bivec[openvino]')") from exc
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads()}
    try:
        compiled = ov.Core().compile_model(str(path), "CPU", config)
    except Exception as exc:
        raise BackendUnavailable(f"OpenVINO could not compile the model ({type(exc).__name__}: {exc})") from exc
    request = compiled.create_infer_request()

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy()}
        return torch.from_numpy(request.infer(feeds)[compiled.output(0)].copy())

    return forward
