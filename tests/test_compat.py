import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModel

from bivec import Encoder, LLM2Vec
from bivec.attention import make_bidirectional

TEXTS = ["a man plays a guitar", ["retrieve similar sentence :", "a dog runs"]]


def make_adapter(base_dir, out, seed):
    torch.manual_seed(seed)
    model = get_peft_model(AutoModel.from_pretrained(base_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    return out


def test_returns_a_tensor_equal_to_the_encoder(tiny_model_dir):
    l2v = LLM2Vec.from_pretrained(tiny_model_dir, pooling_mode="mean", max_length=64, torch_dtype=torch.float32)
    out = l2v.encode(TEXTS, batch_size=2, show_progress_bar=False)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 32)
    np.testing.assert_allclose(out.numpy(), Encoder.from_pretrained(tiny_model_dir, max_length=64).encode(TEXTS), atol=1e-6)
    assert isinstance(l2v.encode(TEXTS, convert_to_numpy=True, show_progress_bar=False), np.ndarray)
    assert l2v.pooling_mode == "mean" and l2v.max_length == 64 and l2v.tokenizer is l2v.encoder.tokenizer


def test_adapters_are_merged_in_order(tiny_model_dir, tmp_path, make_tiny_tokenizer):
    mntp = make_adapter(tiny_model_dir, tmp_path / "mntp", 1)
    simcse = make_adapter(tiny_model_dir, tmp_path / "simcse", 2)
    l2v = LLM2Vec.from_pretrained(tiny_model_dir, mntp, extra_model_name_or_path=simcse, merge_peft=True)
    from peft import PeftModel

    manual = AutoModel.from_pretrained(tiny_model_dir)
    manual = PeftModel.from_pretrained(manual, str(mntp)).merge_and_unload()
    manual = PeftModel.from_pretrained(manual, str(simcse)).merge_and_unload()
    expected = Encoder(make_bidirectional(manual.eval()), make_tiny_tokenizer()).encode(TEXTS)
    np.testing.assert_allclose(l2v.encode(TEXTS, show_progress_bar=False).numpy(), expected, atol=1e-5)
    plain = LLM2Vec.from_pretrained(tiny_model_dir).encode(TEXTS, show_progress_bar=False).numpy()
    assert not np.allclose(plain, expected)


def test_bad_arguments(tiny_model_dir, tmp_path):
    with pytest.raises(TypeError, match="unexpected arguments: colour"):
        LLM2Vec.from_pretrained(tiny_model_dir, colour="red")
    with pytest.raises(ValueError, match="skip_instruction=False is not supported"):
        LLM2Vec.from_pretrained(tiny_model_dir, skip_instruction=False)
    with pytest.raises(FileNotFoundError, match="has no adapter_config.json"):
        LLM2Vec.from_pretrained(tiny_model_dir, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LLM2Vec.from_pretrained(tmp_path / "missing")
