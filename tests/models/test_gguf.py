"""GGUF in: any GGUF file transformers can read is converted once into a cached folder keyed by
its hash, then loads like any model. The test writes a tiny Llama GGUF with the `gguf` library,
reusing the default model's tokenizer fields."""

import numpy as np
import pytest
from typer.testing import CliRunner

from bivec import Encoder
from bivec.cli import app
from bivec.models import default

HIDDEN, FFN, HEADS, KV_HEADS = 16, 32, 2, 1


def write_tiny_gguf(path, architecture="llama", seed=0):
    import gguf

    source = gguf.GGUFReader(default.gguf_path())
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    vocab = len(source.fields["tokenizer.ggml.tokens"].data)
    writer.add_vocab_size(vocab)
    field = lambda name: source.fields[name]  # noqa: E731
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list([bytes(field("tokenizer.ggml.tokens").parts[i]) for i in field("tokenizer.ggml.tokens").data])
    writer.add_token_types([int(field("tokenizer.ggml.token_type").parts[i][0]) for i in field("tokenizer.ggml.token_type").data])
    writer.add_token_merges([bytes(field("tokenizer.ggml.merges").parts[i]) for i in field("tokenizer.ggml.merges").data])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    rng = np.random.default_rng(seed)

    def tensor(name, *shape):
        writer.add_tensor(name, (rng.standard_normal(shape) * 0.05).astype(np.float32))

    tensor("token_embd.weight", vocab, HIDDEN)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    head = HIDDEN // HEADS
    tensor("blk.0.attn_q.weight", HIDDEN, HIDDEN)
    tensor("blk.0.attn_k.weight", KV_HEADS * head, HIDDEN)
    tensor("blk.0.attn_v.weight", KV_HEADS * head, HIDDEN)
    tensor("blk.0.attn_output.weight", HIDDEN, HIDDEN)
    tensor("blk.0.ffn_gate.weight", FFN, HIDDEN)
    tensor("blk.0.ffn_up.weight", FFN, HIDDEN)
    tensor("blk.0.ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_gguf_file_converts_once_and_encodes(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("BIVEC_CACHE", str(tmp_path / "cache"))
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    encoder = Encoder.from_pretrained(path, dtype="float32")
    assert "bivec: converting tiny.gguf" in capfd.readouterr().err
    assert encoder.dim == HIDDEN
    vectors = encoder.encode(["A man plays a guitar.", "Someone is playing music."])
    assert vectors.shape == (2, HIDDEN) and np.isfinite(vectors).all()
    again = Encoder.from_pretrained(path, dtype="float32")
    assert "converting" not in capfd.readouterr().err
    np.testing.assert_allclose(again.encode(["A man plays a guitar."])[0], vectors[0], atol=1e-6)
    converted = list((tmp_path / "cache" / "gguf").iterdir())
    assert len(converted) == 1 and converted[0].name.startswith("tiny-")
    result = CliRunner().invoke(app, ["info", str(path)])
    assert result.exit_code == 0 and "LlamaModel" in result.output


def test_unreadable_and_unsupported_gguf_files_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("BIVEC_CACHE", str(tmp_path / "cache"))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match=r"broken.gguf: not a readable GGUF file"):
        Encoder.from_pretrained(broken)
    odd = write_tiny_gguf(tmp_path / "odd.gguf", architecture="bogusarch")
    with pytest.raises(ValueError, match=r"odd.gguf: transformers cannot convert this GGUF file \(architecture 'bogusarch'\)"):
        Encoder.from_pretrained(odd)
    result = CliRunner().invoke(app, ["encode", "a text", "-m", str(broken)])
    assert result.exit_code == 2 and "broken.gguf: not a readable GGUF file" in result.output
