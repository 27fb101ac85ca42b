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
    assert [hasattr(layer.self_attn, "k_proj") for layer in model.model.layers] == [
        i in (0, 3, 6, 9) for i in range(12)
    ]
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


def test_a_first_layer_window_hides_what_is_further_back_from_that_layer_only():
    wide = init_weights(Backbone(BackboneConfig(**SHAPE)))
    local = Backbone(BackboneConfig(**SHAPE, first_layer_window=4))
    local.load_state_dict(wide.state_dict())
    full = Backbone(BackboneConfig(**SHAPE, first_layer_window=20))  # as wide as the sequence: no change
    full.load_state_dict(wide.state_dict())
    ids, far = _ids(20), _ids(20).clone()
    far[:, 10] = (far[:, 10] + 1) % 64  # 9 positions before the last
    with torch.no_grad():
        assert torch.equal(full(ids)[0], wide(ids)[0])
        layer = lambda m, x: m.model.layers[0](m.model.embed_tokens(x), None)[0][:, -1]  # noqa: E731
        assert torch.allclose(layer(local, ids), layer(local, far))  # the first layer does not see it
        assert not torch.allclose(layer(wide, ids), layer(wide, far))
        assert not torch.allclose(local(ids)[0][:, -1], local(far)[0][:, -1])  # later layers still see it
        assert not torch.allclose(local(ids)[0][:, 4:], wide(ids)[0][:, 4:])
        assert torch.allclose(local(ids)[0][:, :4], wide(ids)[0][:, :4], atol=1e-6)  # within the window: the same


def test_window_heads_holds_only_the_first_heads_of_the_first_layer():
    model = init_weights(Backbone(BackboneConfig(**SHAPE, first_layer_window=4, window_heads=2)))
    ids, far = _ids(20), _ids(20).clone()
    far[:, 10] = (far[:, 10] + 1) % 64
    seen = []
    model.model.layers[0].self_attn.o_proj.register_forward_pre_hook(lambda m, args: seen.append(args[0][:, -1]))
    with torch.no_grad():
        model(ids), model(far)
    outs = torch.stack(seen)  # (run, batch, 4 heads x 8 dims): the heads' outputs before o_proj
    near, rest = outs[..., :16], outs[..., 16:]  # heads 0-1 | heads 2-3
    assert torch.allclose(near[0], near[1])  # the windowed heads do not see position 10
    assert not torch.allclose(rest[0], rest[1])  # the others do


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
    ("first_layer_window", 0, "first_layer_window must be at least 1"),
    ("window_heads", 2, "window_heads must be between 1 and n_heads"),
])  # fmt: skip
def test_bad_switches_are_one_line_errors(key, value, message):
    with pytest.raises(ValueError, match=message):
        BackboneConfig(**SHAPE, **{key: value})
    with pytest.raises(ValueError, match="hyena_order must be >= 2"):
        BackboneConfig(**SHAPE, mixer="hyena", hyena_order=1)


HF = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
          num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip


def test_the_hugging_face_face_is_llama_under_padding_and_packing():
    from retain.models.backbone import BackboneForCausalLM, BackboneLMConfig

    llama = _llama()
    model = BackboneForCausalLM(BackboneLMConfig(**HF)).eval()
    model.load_state_dict(llama.state_dict(), strict=True)
    ids, mask = _ids(12), torch.ones(2, 12, dtype=torch.long)
    mask[0, :3] = 0  # left padding, as generation pads
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        theirs = llama(input_ids=ids, attention_mask=mask, position_ids=pos).logits
        assert torch.allclose(ours[0, 3:], theirs[0, 3:], atol=1e-5) and torch.allclose(ours[1], theirs[1], atol=1e-5)
        packed = torch.tensor([list(range(5)) + list(range(7))] * 2)  # two documents, positions restarting
        both = model(input_ids=ids, position_ids=packed).logits
        assert torch.allclose(both[:, 5:], model(input_ids=ids[:, 5:]).logits, atol=1e-5)  # the second sees only itself
        # attention weights and hidden states, as Llama's eager attention reports them (benchmarks/reading_circuit)
        ours = model(input_ids=ids, attention_mask=mask, position_ids=pos, output_attentions=True,
                     output_hidden_states=True)  # fmt: skip
        llama.set_attn_implementation("eager")
        theirs = llama(input_ids=ids, attention_mask=mask, position_ids=pos, output_attentions=True,
                       output_hidden_states=True)  # fmt: skip
        assert len(ours.attentions) == len(theirs.attentions) == 4 and len(ours.hidden_states) == 5
        assert all(torch.allclose(a[1], b[1], atol=1e-5) and torch.allclose(a[0, :, 3:], b[0, :, 3:], atol=1e-5)
                   for a, b in zip(ours.attentions, theirs.attentions))  # fmt: skip
        assert all(torch.allclose(a[1], b[1], atol=1e-5) for a, b in zip(ours.hidden_states, theirs.hidden_states))


@pytest.mark.parametrize("bf16", [False, True])
def test_the_backbone_at_m_equal_l_trains_as_llama_step_by_step(bf16):
    """Not only the same logits: the same losses, gradients and weights for several AdamW steps on packed
    batches. Under bf16 autocast the gradients are bit for bit Llama's: rotating q and k with the residual
    stream's cos and sin keeps them in fp32 as Llama does, so the gradient a GQA group's shared K head sums is
    summed in fp32 (cast to bf16 first, it drifted 1e-3 a step and the trained models read worse)."""
    from retain.models.backbone import BackboneForCausalLM, BackboneLMConfig
    from retain.train.data import forward_packed

    llama = _llama()
    model = BackboneForCausalLM(BackboneLMConfig(**HF))
    model.load_state_dict(llama.state_dict(), strict=True)
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-2) for m in (llama, model)]
    g = torch.Generator().manual_seed(0)
    packed = torch.tensor([list(range(5)) + list(range(7))] * 2)
    for _ in range(5):
        ids = torch.randint(3, 64, (2, 12), generator=g)
        losses, grads = [], []
        for m, opt in zip((llama, model), opts):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = forward_packed(m.train(), ids, packed, ids).loss
            loss.backward()
            grads.append({n: p.grad.clone() for n, p in m.named_parameters()})
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], abs=1e-5)
        if bf16:
            assert all(torch.equal(grads[1][n], grads[0][n]) for n in grads[0]), "bf16 gradients differ from Llama's"
    theirs = llama.state_dict()
    assert all(torch.allclose(p, theirs[n], atol=1e-5) for n, p in model.state_dict().items())


@pytest.mark.parametrize("switches", [dict(kv_layers=2), dict(loop=2), dict(position="alibi"),
                                      dict(position="nope", kv_layers=1, loop=3),
                                      dict(first_layer_window=3),
                                      dict(first_layer_window=3, window_heads=1)])  # fmt: skip
def test_every_switch_decodes_from_its_cache_as_it_reads_the_whole_sequence(switches):
    from transformers import DynamicCache

    from retain.fermi.arch import from_hf_config
    from retain.models.backbone import BackboneForCausalLM, BackboneLMConfig
    from retain.models.generate import kv_of, prefix_cache

    model = BackboneForCausalLM(BackboneLMConfig(**HF, **switches)).eval()
    ids = _ids(12)
    with torch.no_grad():
        whole = model(input_ids=ids).logits
        first = model(input_ids=ids[:, :8], use_cache=True, cache=DynamicCache(config=model.config))
        rest = model(input_ids=ids[:, 8:], use_cache=True, cache=first.cache)
        assert torch.allclose(rest.logits, whole[:, 8:], atol=1e-5)
        prefix = kv_of(model, ids[0, :8].tolist())  # a KV prefix, as the kv_prefix medium and generation use one
        after = model(
            input_ids=ids[:1, 8:],
            cache=prefix_cache(prefix, 1, model.config),
            use_cache=True,
            position_ids=torch.arange(8, 12)[None],
            attention_mask=torch.ones(1, 12, dtype=torch.long),
        )
        assert torch.allclose(after.logits, whole[:1, 8:], atol=1e-5)
    arch = from_hf_config(model.config.to_dict())  # the Fermi calculator reads the saved config
    assert sum(k.numel() + v.numel() for k, v in prefix) * 4 == 8 * kv_bytes_per_token(arch, "fp32")


def test_a_switched_model_config_builds_saves_and_loads_the_backbone(tmp_path):
    from transformers import PreTrainedTokenizerFast

    from retain.models.backbone import BackboneForCausalLM
    from retain.models.build import build_model, load_model
    from retain.models.config import ModelConfig

    tok = PreTrainedTokenizerFast(tokenizer_object=__import__("tokenizers").Tokenizer(
        __import__("tokenizers").models.WordLevel({"<pad>": 0, "<s>": 1, "</s>": 2, "a": 3}, unk_token="<pad>")),
        pad_token="<pad>", bos_token="<s>", eos_token="</s>")  # fmt: skip
    assert type(build_model(ModelConfig(size="tiny"), tok)).__name__ == "LlamaForCausalLM"
    model = build_model(ModelConfig(size="tiny", position="nope", kv_layers=2, tie_embeddings=False), tok)
    assert isinstance(model, BackboneForCausalLM) and len(model.cfg.owners()) == 2
    model.save_pretrained(tmp_path)
    again = load_model(tmp_path)  # Auto classes know the model type: no remote code
    ids = torch.tensor([[1, 3, 3, 2]])
    with torch.no_grad():
        assert isinstance(again, BackboneForCausalLM) and torch.equal(
            again(input_ids=ids).logits, model(input_ids=ids).logits
        )
        # a switch starts from the plain model's draw: m = L is the Llama of the same seed, m < L shares its MLPs
        plain, same = (
            build_model(ModelConfig(size="tiny"), tok, seed=3),
            build_model(ModelConfig(size="tiny", kv_layers=4), tok, seed=3),
        )
        assert isinstance(same, BackboneForCausalLM) and torch.allclose(
            same(input_ids=ids).logits, plain(input_ids=ids).logits, atol=1e-5
        )
        fewer = build_model(ModelConfig(size="tiny", kv_layers=1), tok, seed=3).state_dict()
        assert torch.equal(
            fewer["model.layers.2.mlp.up_proj.weight"], plain.state_dict()["model.layers.2.mlp.up_proj.weight"]
        )


@pytest.mark.parametrize("key,value,message", [
    ("position", "sine", "model.position must be rope, nope or alibi"),
    ("kv_layers", 5, "model.kv_layers must be between 1 and the model's 4 layers"),
    ("loop", 0, "model.loop must be at least 1"),
    ("first_layer_window", 0, "model.first_layer_window must be at least 1"),
    ("window_heads", 2, "model.window_heads needs model.first_layer_window"),
])  # fmt: skip
def test_bad_model_switches_are_one_line(key, value, message):
    from retain.models.config import ModelConfig

    with pytest.raises(ValueError, match=message):
        ModelConfig(size="tiny", **{key: value})
    with pytest.raises(ValueError, match="a model.path is loaded as it is"):
        ModelConfig(path="models/x", loop=2)


@pytest.mark.slow  # ~30 s: a smoke pretraining and a continual run with three media
def test_pretrain_and_a_continual_run_on_an_mlkv_nope_backbone(tmp_path):
    from pathlib import Path

    from retain.config import load_config
    from retain.continual.loop import ContinualConfig, continual
    from retain.models.build import load_model
    from retain.train.pretrain import PretrainConfig, pretrain

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(PretrainConfig, root / "configs" / "smoke" / "pretrain.yaml",
                      ["model.position=nope", "model.kv_layers=2", "train.steps=4"])  # fmt: skip
    pretrain(cfg, out=tmp_path / "base")
    assert load_model(tmp_path / "base" / "model").config.model_type == "retain_backbone"
    run = load_config(ContinualConfig, root / "configs" / "smoke" / "continual.yaml",
                      [f"base={tmp_path / 'base'}", "media=[{kind: context, budget_tokens: 400}, "
                       "{kind: lora, steps: 1, batch_size: 2}, "
                       "{kind: kv_prefix, prompt_tokens: 4, steps: 1, batch_size: 2}]",
                       "eval.base_n=4", "eval.skill_n=2", "liti=[]"])  # fmt: skip
    s = continual(run, out=tmp_path / "run")
    assert (tmp_path / "run" / "report.md").exists() and set(s["media"]) == {"context", "lora", "kv_prefix"}
    assert s["kv_bytes_per_token"] == 2 * 2 * 2 * 32 * 2  # 2 of 4 layers own K/V: 2 heads x 32 dims, bf16
