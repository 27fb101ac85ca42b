"""The research backbone's switches against what they must equal: the Llama decoder, a deeper plain stack,
a model without positions, and the KV cache bytes the Fermi calculator reports."""

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from retain.fermi.formulas import kv_bytes_per_token
from retain.models.backbone import Backbone, BackboneConfig, arch, cache_bytes, init_weights

SHAPE = dict(vocab_size=64, d_model=32, n_layers=4, n_heads=4, kv_heads=2, d_ff=64, max_seq_len=64)


def _llama(layers: int = 4) -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                                        max_position_embeddings=64, tie_word_embeddings=False)).eval()  # fmt: skip


def _ids(T: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 64, (2, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kv_layers", [None, 4])  # MLKV with m = L is the plain model
def test_rope_attention_without_loop_is_the_llama_decoder(kv_layers):
    llama = _llama()
    model = Backbone(BackboneConfig(**SHAPE, kv_layers=kv_layers))
    model.load_state_dict(llama.state_dict(), strict=True)  # the same names, the same tensors
    with torch.no_grad():
        assert torch.allclose(model(_ids())[0], llama(_ids()).logits, atol=1e-5)


def test_mlkv_places_owners_as_the_reference_and_the_others_have_no_k_v():
    cfg = BackboneConfig(**{**SHAPE, "n_layers": 12}, kv_layers=4)
    assert cfg.owners() == [0, 3, 6, 9]
    model = Backbone(cfg)
    assert [hasattr(layer.self_attn, "k_proj") for layer in model.model.layers] == [i in (0, 3, 6, 9) for i in range(12)]
    assert BackboneConfig(**SHAPE, kv_layers=1).owners() == [0]


def test_a_loop_of_two_is_the_plain_stack_twice_as_deep_with_its_layers_repeated():
    looped = init_weights(Backbone(BackboneConfig(**SHAPE, loop=2)))
    deep = Backbone(BackboneConfig(**{**SHAPE, "n_layers": 8}))
    state = looped.state_dict()
    for k, v in list(state.items()):
        if k.startswith("model.layers."):
            i, rest = k.split(".", 3)[2:]
            state[f"model.layers.{int(i) + 4}.{rest}"] = v
    deep.load_state_dict(state, strict=True)
    with torch.no_grad():
        (a, cache_a), (b, cache_b) = looped(_ids()), deep(_ids())
    assert torch.allclose(a, b, atol=1e-5) and len(cache_a) == len(cache_b) == 8
    one = Backbone(BackboneConfig(**SHAPE, loop=1))
    one.load_state_dict(looped.state_dict())
    with torch.no_grad():
        assert not torch.allclose(one(_ids())[0], a, atol=1e-3)  # the second pass does something


@pytest.mark.parametrize("position,invariant", [("nope", True), ("rope", False), ("alibi", False)])
def test_without_positions_the_first_layer_cannot_tell_the_order_of_what_came_before(position, invariant):
    model = init_weights(Backbone(BackboneConfig(**SHAPE, position=position)))
    ids = _ids(12)
    perm = torch.cat([torch.randperm(11, generator=torch.Generator().manual_seed(2)), torch.tensor([11])])
    with torch.no_grad():
        first = model.model.layers[0]
        a, _ = first(model.model.embed_tokens(ids), None)
        b, _ = first(model.model.embed_tokens(ids[:, perm]), None)
    assert torch.allclose(a[:, -1], b[:, -1], atol=1e-5) is invariant  # the last position's output


@pytest.mark.parametrize("kv_layers,kv_heads,loop", [(None, 4, 1), (None, 2, 1), (2, 1, 1), (1, 2, 3)])
def test_the_kv_cache_bytes_the_fermi_calculator_reports_are_the_real_cache_tensors(kv_layers, kv_heads, loop):
    cfg = BackboneConfig(**{**SHAPE, "kv_heads": kv_heads}, kv_layers=kv_layers, loop=loop)
    with torch.no_grad():
        _, cache = Backbone(cfg)(_ids(T=20))
    assert cache_bytes(cache) == 2 * 20 * kv_bytes_per_token(arch(cfg), "fp32")  # batch 2 x 20 tokens


def test_the_hyena_mixer_keeps_no_cache_and_is_causal():
    model = init_weights(Backbone(BackboneConfig(**{k: v for k, v in SHAPE.items() if k != "kv_heads"}, mixer="hyena")))
    ids = _ids()
    ids2 = ids.clone()
    ids2[:, 15] = (ids2[:, 15] + 1) % 64
    with torch.no_grad():
        (a, cache), (b, _) = model(ids), model(ids2)
    assert cache == [] and torch.allclose(a[:, :15], b[:, :15], atol=1e-5) and not torch.allclose(a[:, 15:], b[:, 15:])


@pytest.mark.parametrize("key,value,message", [
    ("position", "sinusoidal", "position must be rope, nope or alibi"),
    ("kv_layers", 5, r"kv_layers must be between 1 and n_layers \(4\)"),
    ("mixer", "mamba", "mixer must be attention or hyena"),
    ("loop", 0, "loop must be at least 1"),
])  # fmt: skip
def test_bad_switches_are_one_line_errors(key, value, message):
    with pytest.raises(ValueError, match=message):
        BackboneConfig(**SHAPE, **{key: value})
    with pytest.raises(ValueError, match="hyena_order must be >= 2"):
        BackboneConfig(**SHAPE, mixer="hyena", hyena_order=1)
