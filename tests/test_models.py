"""Model building, loading errors and batched generation. `pytest tests/test_models.py`"""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from retain.errors import RetainError
from retain.models.build import build_model, load_model, load_model_and_tokenizer, param_count
from retain.models.config import ModelConfig
from retain.models.generate import generate
from retain.world.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(["a b c d e f g h i j k l m n o p q r s t u v w x y z"])


def _tiny(vocab=40, seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, eos_token_id=3)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("size, lo, hi", [("tiny", 0.8e6, 1.3e6), ("small", 5e6, 7e6), ("base", 20e6, 30e6)])
def test_named_sizes(size, lo, hi):
    words = " ".join(f"w{i}" for i in range(600))
    model = build_model(ModelConfig(size=size), train_tokenizer([words]))
    assert lo < param_count(model) < hi
    cfg = model.config
    assert cfg.num_key_value_heads < cfg.num_attention_heads  # GQA


def test_layers_overrides_the_named_depth_and_nothing_else():
    tok = train_tokenizer([" ".join(f"w{i}" for i in range(600))])
    deep, shallow = build_model(ModelConfig(size="tiny"), tok), build_model(ModelConfig(size="tiny", layers=2), tok)
    assert (deep.config.num_hidden_layers, shallow.config.num_hidden_layers) == (4, 2)
    assert shallow.config.hidden_size == deep.config.hidden_size
    assert shallow.config.intermediate_size == deep.config.intermediate_size
    with pytest.raises(ValueError, match="model.layers must be at least 1"):
        ModelConfig(layers=0)


def test_heads_and_kv_heads_override_the_named_size():
    tok = train_tokenizer([" ".join(f"w{i}" for i in range(600))])
    mha = build_model(ModelConfig(size="tiny", kv_heads=4), tok).config
    assert (mha.num_attention_heads, mha.num_key_value_heads, mha.head_dim) == (4, 4, 32)
    eight = build_model(ModelConfig(size="tiny", heads=8), tok).config
    assert (eight.num_attention_heads, eight.num_key_value_heads, eight.head_dim) == (8, 2, 16)
    for bad in ({"heads": 3}, {"kv_heads": 3}, {"heads": 2, "kv_heads": 4}):
        with pytest.raises(ValueError, match="must divide"):
            ModelConfig(size="tiny", **bad)


def test_width_overrides_the_named_width_and_its_mlp():
    tok = train_tokenizer([" ".join(f"w{i}" for i in range(600))])
    narrow = build_model(ModelConfig(size="tiny", width=32, layers=1), tok)
    c = narrow.config
    assert (c.hidden_size, c.intermediate_size, c.num_attention_heads, c.head_dim) == (32, 128, 4, 8)
    n_vocab = len(tok)
    # embeddings (tied) + one layer: q, k, v, o (GQA, 2 of 4 heads) + the MLP + two norms, + the final norm
    assert sum(p.numel() for p in narrow.parameters()) == n_vocab * 32 + (32 * 32 * 2 + 2 * 32 * 16 + 3 * 32 * 128
                                                                          + 2 * 32) + 32  # fmt: skip
    for bad in ({"width": 0}, {"width": 30}):  # 30 is not divisible by the 4 heads
        with pytest.raises(ValueError, match="model.width|must divide"):
            ModelConfig(size="tiny", **bad)


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(RetainError, match="model path not found"):
        load_model(tmp_path / "nope")
    with pytest.raises(RetainError, match="no config.json"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"}))
    with pytest.raises(RetainError, match="not a causal language model"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{oops")
    with pytest.raises(RetainError, match="not valid JSON"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["XForCausalLM"], "auto_map": {"a": "b"}}))
    with pytest.raises(RetainError, match="remote code"):
        load_model(tmp_path)


def test_corrupt_weights_and_roundtrip(tmp_path, tok):
    model = build_model(ModelConfig(size="tiny"), tok)
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    loaded, tok2 = load_model_and_tokenizer(tmp_path)
    x = torch.tensor([[2, 5, 6, 7]])
    assert torch.allclose(loaded(input_ids=x).logits, model.eval()(input_ids=x).logits, atol=1e-6)
    assert tok2("a b c")["input_ids"] == tok("a b c")["input_ids"]
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(RetainError, match="could not load the model"):
        load_model(tmp_path)


def test_batched_left_padded_generation_equals_one_by_one():
    model = _tiny()
    prompts = [[2, 5, 6], [2, 7, 8, 9, 10, 11], [2, 12]]
    batched = generate(model, prompts, eos_id=3, pad_id=0, max_new_tokens=6)
    singles = [generate(model, [p], eos_id=3, pad_id=0, max_new_tokens=6)[0] for p in prompts]
    assert batched == singles


def test_greedy_matches_hf_generate():
    model = _tiny()
    prompt = [2, 9, 4, 17]
    ours = generate(model, [prompt], eos_id=3, pad_id=0, max_new_tokens=7)[0]
    hf = model.generate(torch.tensor([prompt]), max_new_tokens=7, do_sample=False, eos_token_id=3, pad_token_id=0)
    hf_new = hf[0, len(prompt) :].tolist()
    hf_new = hf_new[: hf_new.index(3)] if 3 in hf_new else hf_new
    assert ours == hf_new


def test_generation_stops_at_eos():
    from transformers import LogitsProcessor, LogitsProcessorList

    class EosAfter(LogitsProcessor):  # forces eos once a sequence has 2 new tokens
        def __call__(self, input_ids, scores):
            if input_ids.shape[1] >= 4:
                scores[:, 3] = 1e9
            return scores

    out = generate(_tiny(), [[2, 5]], eos_id=3, pad_id=0, max_new_tokens=8,
                   logits_processor=LogitsProcessorList([EosAfter()]))  # fmt: skip
    assert len(out[0]) == 2 and 3 not in out[0]
