"""int8 schemes against torch float32, on bivec's calibration set, in one run.

ONNX Runtime's dynamic int8 (weights per output channel, activations per batch) on the exported
model, some layers kept in float32, optionally after SmoothQuant's scale migration
(:func:`bivec.int8.smooth`, exact in float32); OpenVINO in float32, the fastest exact engine on
some CPUs; and bivec's own int8 (:mod:`bivec.int8`: activations
per token, after the same migration), with every layer in int8 and with the leading float32 layers
that the accuracy check keeps. Prints, per scheme, dtype="auto"'s accuracy rule on the pooled
vectors (share of texts at cosine >= 0.99, needing 99%; Spearman on the calibration pairs within
0.3 of float32's), the worst token's 1 - cos, and tokens/s against torch float32.

Usage: python benchmarks/int8_schemes.py [--model bivec/default] [--alphas 0.5,0.8]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from _common import cpu_description, print_table

from bivec import Encoder, backends, precision
from bivec.backends import onnx as bivec_onnx
from bivec.int8 import activation_maxima, smooth


def main() -> None:
    import onnx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bivec/default")
    parser.add_argument("--alphas", default="0.5,0.8", help="SmoothQuant migration strengths to try")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", flush=True)
    texts, pairs = precision.calibration_set()
    encoder = Encoder.from_pretrained(args.model, dtype="float32")
    reference, torch_seconds = backends.token_states(encoder, texts, None)
    tokens = sum(len(s) for s in reference)
    maxima = activation_maxima(encoder.model, lambda: backends.token_states(encoder, texts[:64], None))
    work = Path(tempfile.mkdtemp(prefix="bivec-int8-"))
    rows = []

    def report(scheme: str, kept: str, states, seconds: float) -> None:
        verdict = backends.judge_states(reference, states, pairs)
        rows.append([scheme, kept, "yes" if verdict["passed"] else "no", f"{100 * verdict['share_close']:.1f}%",
                     f"{verdict['min_cosine']:.4f}", f"{verdict['spearman']:.2f} / {verdict['spearman_float32']:.2f}",
                     f"{backends.worst_token_distance(reference, states):.2e}", f"{tokens / seconds:.0f}",
                     f"{torch_seconds / seconds:.2f}x"])
        print(rows[-1], flush=True)

    # The fastest exact engine on some CPUs, for the 1.3x that an int8 mode should add to it.
    states, seconds = backends.token_states(encoder, texts, backends.build_forward("openvino", encoder))
    report("OpenVINO float32 (exact)", "all", states, seconds)
    for alpha in [None, *(float(a) for a in args.alphas.split(","))]:
        if alpha is not None:
            smooth(encoder.model, maxima, alpha)
            smoothed, _ = backends.token_states(encoder, texts, None)
            print(f"smoothing a={alpha}: worst token 1-cos in float32 {backends.worst_token_distance(reference, smoothed):.1e}", flush=True)
        source = bivec_onnx.exported_model(encoder.model)
        names = [n.name for n in onnx.load(str(source), load_external_data=False).graph.node if n.op_type == "MatMul"]
        for kept, exclude in (("none", []), ("down_proj", [n for n in names if "down_proj" in n])):
            target = work / f"int8-{alpha}-{kept}.onnx"
            bivec_onnx.quantize(source, target, keep_float=exclude)
            states, seconds = backends.token_states(encoder, texts, bivec_onnx.onnxruntime_forward(target))
            report(f"ONNX Runtime {'plain' if alpha is None else f'SmoothQuant a={alpha}'}", kept, states, seconds)
        if alpha is not None:  # the next strength starts from the unsmoothed weights
            shutil.rmtree(source.parent, ignore_errors=True)  # a smoothed export is of no later use
            encoder = Encoder.from_pretrained(args.model, dtype="float32")
    checked = Encoder.from_pretrained(args.model, dtype="int8")
    kept = checked.precision.float_layers if checked.precision.dtype == "int8" else None
    plan = precision.prepare_int8(encoder)
    for float_layers in sorted({0, kept} - {None}):
        plan.use(float_layers)
        states, seconds = backends.token_states(encoder, texts, None)
        report("bivec int8 (per token, SmoothQuant a=0.5)", f"first {float_layers} layers", states, seconds)
    print()
    print(f"torch float32: {tokens / torch_seconds:.0f} tokens/s on {len(texts)} calibration texts ({tokens} tokens)")
    print_table(["scheme", "kept float32", "passes", "texts at cos >= 0.99", "min cos", "Spearman (fp32)",
                 "worst token 1-cos", "tokens/s", "vs torch fp32"], rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
