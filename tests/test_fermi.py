"""Byte formulas against published numbers and against real tensors. `pytest tests/test_fermi.py`"""

import json

import pytest
import torch

from retain.cli.main import main
from retain.errors import RetainError
from retain.fermi import (
    PRESETS,
    FermiConfig,
    estimate,
    from_hf_config,
    get_preset,
    kv_bytes_per_token,
    kv_prefix_params,
    load_config_json,
    lora_params,
    soft_prompt_params,
)
from retain.fermi.formulas import dtype_bytes

# Parameter counts of the released checkpoints (sum of numel over the safetensors shards).
PUBLISHED_PARAMS = {
    "llama-3-8b": 8_030_261_248,
    "llama-3-70b": 70_553_706_496,
    "llama-3-405b": 405_853_388_800,
    "llama-3.2-1b": 1_235_814_400,
    "llama-2-7b": 6_738_415_616,
    "mistral-7b": 7_241_732_096,
    "qwen2.5-7b": 7_615_616_512,
    "qwen2.5-0.5b": 494_032_768,
    "gemma-2-9b": 9_241_705_984,
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_param_counts_match_released_checkpoints(name):
    assert PRESETS[name].param_count() == PUBLISHED_PARAMS[name]


def test_seed_example_llama3_70b():
    """The seed's figures: KV/LoRA about 37x at 100k tokens (rank 32), pretraining about 0.009 B/token."""
    est = estimate(get_preset("llama-3-70b"), FermiConfig(tokens=100_000, rank=32, targets="all-linear"))
    assert est["kv_bytes_per_token"] == 80 * 2 * 8 * 128 * 2
    assert 35 <= est["kv_over_lora"] <= 42
    assert 0.0085 <= est["pretrain_bytes_per_token"] <= 0.0100
    # attention-only LoRA is ~3x smaller, so it does not reproduce the seed's ratio
    attn = estimate(get_preset("llama-3-70b"), FermiConfig(targets="attn"))
    assert attn["kv_over_lora"] > 100


def test_cli_json_has_required_keys(capsys):
    assert main(["fermi", "--model", "llama-3-70b", "--tokens", "100000", "--rank", "32",
                 "--targets", "all-linear", "--format", "json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    for key in ("kv_bytes_per_token", "lora_params", "lora_bytes", "lora_bytes_per_token", "kv_over_lora",
                "pretrain_bytes_per_token", "assumptions"):  # fmt: skip
        assert key in out
    assert out["lora_bytes_per_token"] == pytest.approx(out["lora_bytes"] / 100_000)


def test_mqa_mlkv_and_dtypes_scale_kv_bytes():
    base = get_preset("llama-3-8b")
    assert kv_bytes_per_token(base, "bf16") == 32 * 2 * 8 * 128 * 2
    assert kv_bytes_per_token(base.with_changes(n_kv_heads=1)) == kv_bytes_per_token(base) / 8
    assert kv_bytes_per_token(base.with_changes(n_kv_layers=4)) == kv_bytes_per_token(base) / 8
    assert kv_bytes_per_token(base, "fp8") == kv_bytes_per_token(base) / 2
    assert kv_bytes_per_token(base, "int4") == kv_bytes_per_token(base) / 4
    # MLKV layers without K/V have no k_proj/v_proj to adapt either
    assert lora_params(base.with_changes(n_kv_layers=4), 8, "qv") < lora_params(base, 8, "qv")


def test_pretraining_unpublished_is_none_not_a_guess():
    est = estimate(get_preset("mistral-7b"), FermiConfig())
    assert est["pretrain_bytes_per_token"] is None
    assert any("not published" in a for a in est["assumptions"])


def _tiny_llama(tie: bool = False):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=80, num_hidden_layers=3,
                      num_attention_heads=6, num_key_value_heads=2, tie_word_embeddings=tie)  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("tie", [False, True])
def test_formulas_equal_real_tensors(tie):
    """KV cache, LoRA adapter, soft prompt and parameter count against a real GQA model and PEFT adapter."""
    from peft import LoraConfig, get_peft_model

    model = _tiny_llama(tie)
    arch = from_hf_config(model.config.to_dict())
    assert arch.param_count() == sum(p.numel() for p in model.parameters())

    T = 11
    with torch.no_grad():
        out = model(torch.randint(0, 97, (1, T)), use_cache=True)
    cache = out.past_key_values
    kv_bytes = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
    assert kv_bytes == kv_bytes_per_token(arch, "fp32") * T
    assert len(cache.layers) * cache.layers[0].keys.shape[1] == arch.n_layers * arch.n_kv_heads

    for targets, modules in [("all-linear", "all-linear"), ("qv", ["q_proj", "v_proj"]),
                             ("attn", ["q_proj", "k_proj", "v_proj", "o_proj"])]:  # fmt: skip
        peft_model = get_peft_model(_tiny_llama(tie), LoraConfig(r=4, lora_alpha=8, target_modules=modules))
        adapter = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
        assert sum(v.numel() for v in adapter.values()) == lora_params(arch, 4, targets)
        assert sum(v.nbytes for v in adapter.values()) == lora_params(arch, 4, targets) * dtype_bytes("fp32")
        assert sum(v.to(torch.bfloat16).nbytes for v in adapter.values()) == lora_params(arch, 4, targets) * 2

    assert soft_prompt_params(arch, 5) == model.get_input_embeddings()(torch.zeros(5, dtype=torch.long)).numel()
    assert kv_prefix_params(arch, 5) * 4 == kv_bytes_per_token(arch, "fp32") * 5


def test_config_json_loading(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                num_key_value_heads=1, vocab_size=100).save_pretrained(tmp_path)  # fmt: skip
    arch = load_config_json(tmp_path)
    assert (arch.n_layers, arch.n_kv_heads, arch.attention_kind) == (2, 1, "MQA")


@pytest.mark.parametrize(
    "content, message",
    [
        ({"architectures": ["BertForMaskedLM"], "model_type": "bert"}, "not a causal-LM config"),
        ({"architectures": ["LlamaForCausalLM"], "hidden_size": 8}, "lacks config keys"),
        ("[1, 2]", "must hold a JSON object"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_config_json_is_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(RetainError, match=message):
        load_config_json(path)
    assert main(["fermi", "--config-json", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_unknown_preset_suggests(capsys):
    assert main(["fermi", "--model", "lama-3-8b"]) == 2
    assert "did you mean 'llama-3-8b'" in capsys.readouterr().err


def test_plots_are_written(tmp_path, capsys):
    assert main(["fermi", "--plot", str(tmp_path), "--plot-ranks", "8,64"]) == 0
    for name in ("bytes_vs_tokens.png", "bytes_vs_rank.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_plot_lines_carry_the_formulas():
    """The figure's LoRA line at the chosen token count is the formula's value (not just a pretty picture)."""
    import numpy as np

    from retain.fermi.plots import plot_vs_tokens

    arch, cfg = get_preset("llama-3-8b"), FermiConfig(plot_ranks=[16])
    fig = plot_vs_tokens(arch, cfg)
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    x, y = lines["LoRA r=16 (all-linear)"].get_data()
    i = int(np.argmin(abs(np.log(x) - np.log(1e6))))
    assert y[i] == pytest.approx(lora_params(arch, 16) * 2 / x[i])
    assert set(lines["KV cache (bf16)"].get_ydata()) == {kv_bytes_per_token(arch)}
