"""The updates benchmarks/write_control.py asks the probe of: the same product through other factors, and
random ones with the written singular values."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks.write_control import random_like, set_updates, updates


def _lora_model():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2)  # fmt: skip
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=3, lora_alpha=6, target_modules=["up_proj", "q_proj"]))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    return model


def test_set_updates_gives_each_module_the_product_asked_for():
    model = _lora_model()
    written = updates(model)
    assert len(written) == 2 and all(torch.linalg.matrix_rank(d) == 3 for d in written)
    ids = torch.arange(10)[None]
    before = model(ids).logits
    set_updates(model, written)  # other factors, the same products
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(updates(model), written))
    assert torch.allclose(model(ids).logits, before, atol=1e-4)
    set_updates(model, [-d for d in written])
    assert all(torch.allclose(a, -b, atol=1e-5) for a, b in zip(updates(model), written))


def test_a_random_update_keeps_the_singular_values_and_not_the_directions():
    d = updates(_lora_model())[0]
    r = random_like(d, torch.Generator().manual_seed(0))
    s_d, s_r = torch.linalg.svdvals(d), torch.linalg.svdvals(r)
    assert torch.allclose(s_d[:3], s_r[:3], rtol=1e-4) and s_r[3:].abs().max() < 1e-4
    assert torch.nn.functional.cosine_similarity(d.flatten(), r.flatten(), dim=0).abs() < 0.3
