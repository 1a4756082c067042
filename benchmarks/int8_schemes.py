"""int8 schemes for the ONNX Runtime backend against torch float32, on bivec's calibration set.

Each scheme quantises the exported model's linear layers with ONNX Runtime's dynamic int8
(weights per output channel, activations per batch), some kept in float32, optionally after
SmoothQuant-style scale migration (per input channel ``s = max|x|^a / max|w|^(1-a)``: the RMSNorm
weights before q/k/v and gate/up are divided by ``s`` and those layers' weight columns multiplied
by it; up_proj's rows and down_proj's columns likewise, and v_proj's rows and o_proj's columns per
key/value head; exact in float32). Prints, per scheme, dtype="auto"'s accuracy rule on the pooled
vectors (share of texts at cosine >= 0.99, needing 99%; Spearman on the calibration pairs within
0.3 of float32's), the worst token's 1 - cos, and tokens/s against torch float32 (in one run).

Usage: python benchmarks/int8_schemes.py [--model bivec/default] [--alphas 0.5,0.8]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from _common import cpu_description, print_table

from bivec import Encoder, backends, precision
from bivec.backends import onnx as bivec_onnx


def activation_maxima(encoder: Encoder, texts: list[str]) -> dict[str, torch.Tensor]:
    """Per layer and linear input (q_proj, o_proj, gate_proj, down_proj): max |x| per channel."""
    maxima: dict[str, torch.Tensor] = {}
    hooks = []

    def record(name: str):
        def hook(module, inputs):
            x = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            maxima[name] = torch.maximum(maxima[name], x) if name in maxima else x
        return hook

    for i, layer in enumerate(encoder.model.layers):
        for part, name in (("self_attn", "q_proj"), ("self_attn", "o_proj"), ("mlp", "gate_proj"), ("mlp", "down_proj")):
            hooks.append(getattr(getattr(layer, part), name).register_forward_pre_hook(record(f"{i}.{name}")))
    backends.token_states(encoder, texts, None)
    for hook in hooks:
        hook.remove()
    return maxima


def smooth(encoder: Encoder, maxima: dict[str, torch.Tensor], alpha: float) -> None:
    """Migrate activation scale into the weights, in place (Llama-style layers)."""
    config = encoder.model.config
    head_dim = config.hidden_size // config.num_attention_heads
    kv, groups = config.num_key_value_heads, config.num_attention_heads // config.num_key_value_heads

    def scale(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return (a.clamp(min=1e-5) ** alpha / w.clamp(min=1e-5) ** (1 - alpha)).clamp(min=1e-5)

    with torch.no_grad():
        for i, layer in enumerate(encoder.model.layers):
            attn, mlp = layer.self_attn, layer.mlp
            qkv = (attn.q_proj, attn.k_proj, attn.v_proj)
            s = scale(maxima[f"{i}.q_proj"], torch.cat([m.weight.abs() for m in qkv]).amax(0))
            layer.input_layernorm.weight.div_(s)
            for m in qkv:
                m.weight.mul_(s)
            s = scale(maxima[f"{i}.gate_proj"], torch.cat([mlp.gate_proj.weight.abs(), mlp.up_proj.weight.abs()]).amax(0))
            layer.post_attention_layernorm.weight.div_(s)
            for m in (mlp.gate_proj, mlp.up_proj):
                m.weight.mul_(s)
            s = scale(maxima[f"{i}.down_proj"], mlp.down_proj.weight.abs().amax(0))
            mlp.up_proj.weight.div_(s[:, None])
            mlp.down_proj.weight.mul_(s)
            # o_proj's input is the attention output, linear in v: one scale per v channel, shared
            # by the query heads of its group.
            per_kv = lambda t: t.view(kv, groups, head_dim).amax(1)  # noqa: E731
            s = scale(per_kv(maxima[f"{i}.o_proj"]), per_kv(attn.o_proj.weight.abs().amax(0))).reshape(-1)
            attn.v_proj.weight.div_(s[:, None])
            attn.o_proj.weight.mul_(s.view(kv, 1, head_dim).expand(-1, groups, -1).reshape(-1))


def main() -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="bivec/default")
    parser.add_argument("--alphas", default="0.5,0.8", help="SmoothQuant migration strengths to try")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}", flush=True)
    texts, pairs = precision.calibration_set()
    encoder = Encoder.from_pretrained(args.model, dtype="float32")
    reference, torch_seconds = backends.token_states(encoder, texts, None)
    tokens = sum(len(s) for s in reference)
    maxima = activation_maxima(encoder, texts[:64])
    work = Path(tempfile.mkdtemp(prefix="bivec-int8-"))
    rows = []
    for alpha in [None, *(float(a) for a in args.alphas.split(","))]:
        if alpha is not None:
            smooth(encoder, maxima, alpha)
            smoothed, _ = backends.token_states(encoder, texts, None)
            print(f"smoothing a={alpha}: worst token 1-cos in float32 {backends.worst_token_distance(reference, smoothed):.1e}", flush=True)
        source = bivec_onnx.exported_model(encoder.model)
        names = [n.name for n in onnx.load(str(source), load_external_data=False).graph.node if n.op_type == "MatMul"]
        for kept, exclude in (("none", []), ("down_proj", [n for n in names if "down_proj" in n])):
            target = work / f"int8-{alpha}-{kept}.onnx"
            quantize_dynamic(source, target, per_channel=True, weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
            states, seconds = backends.token_states(encoder, texts, bivec_onnx.onnxruntime_forward(target))
            verdict = backends.judge_states(reference, states, pairs)
            rows.append(["plain" if alpha is None else f"SmoothQuant a={alpha}", kept, "yes" if verdict["passed"] else "no",
                         f"{100 * verdict['share_close']:.1f}%", f"{verdict['min_cosine']:.4f}",
                         f"{verdict['spearman']:.2f} / {verdict['spearman_float32']:.2f}",
                         f"{backends.worst_token_distance(reference, states):.2e}", f"{tokens / seconds:.0f}",
                         f"{torch_seconds / seconds:.2f}x"])
            print(rows[-1], flush=True)
        if alpha is not None:  # the next strength starts from the unsmoothed weights
            shutil.rmtree(source.parent, ignore_errors=True)  # a smoothed export is of no later use
            encoder = Encoder.from_pretrained(args.model, dtype="float32")
    print()
    print(f"torch float32: {tokens / torch_seconds:.0f} tokens/s on {len(texts)} calibration texts ({tokens} tokens)")
    print_table(["scheme", "kept float32", "passes", "texts at cos >= 0.99", "min cos", "Spearman (fp32)",
                 "worst token 1-cos", "tokens/s", "vs torch fp32"], rows)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
