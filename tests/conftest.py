"""Shared fixtures. Run the fast suite with `make test` (`pytest -q -n auto`: one worker per core), one file
with `pytest tests/test_x.py`; slow checks with `make test-slow`."""

import os

import pytest

os.environ.setdefault("RETAIN_PROGRESS", "0")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `pytest -n 2`: each worker computes on one core
    os.environ["OMP_NUM_THREADS"] = "1"


@pytest.fixture(autouse=True)
def _restore_torch_state():
    """Tests may change torch's global dtype or thread count; put them back. They compute in fp32 (exact, and
    the same on a CPU with bf16 hardware and one without); a test of the bf16 path sets it itself."""
    import torch

    from retain.models.device import set_precision

    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    set_precision("fp32")
    yield
    set_precision("fp32")
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_base(tmp_path_factory):
    """A base run (model/ and world/) from the seconds-long smoke pretraining config, shared by the tests."""
    from pathlib import Path

    from retain.config import load_config
    from retain.train.pretrain import PretrainConfig, pretrain

    root = Path(__file__).resolve().parents[1]
    out = tmp_path_factory.mktemp("smoke") / "base"
    pretrain(load_config(PretrainConfig, root / "configs" / "smoke" / "pretrain.yaml"), out=out)
    return out


@pytest.fixture(scope="session")
def plain_base(tmp_path_factory):
    """A plain Hugging Face model folder (config, safetensors, tokenizer; no world/): a tiny random Llama with a
    byte-level BPE tokenizer that, like SmolLM2's, adds no BOS, ends documents with <|endoftext|> and has a chat
    template with an end-of-turn token."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from retain.continual.stream import PROBE

    corpus = [PROBE.read_text(), "User: Kim moved to Oslo.\nAssistant: Noted.\nQ: Where does Kim live?\nA: Oslo\n"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus, trainer)
    hf_tok = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                     unk_token="<|endoftext|>", pad_token="<|im_end|>")  # fmt: skip
    hf_tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                            "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(hf_tok), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=2048, bos_token_id=1, eos_token_id=2,
                                         pad_token_id=2))  # fmt: skip
    out = tmp_path_factory.mktemp("plain") / "model"
    model.save_pretrained(str(out))
    hf_tok.save_pretrained(str(out))
    return out


@pytest.fixture
def user_sessions(tmp_path):
    """A user session file of three short sessions with questions (aliases, an update)."""
    import json

    rows = [
        {"id": "s1", "turns": [{"role": "User", "text": "Kim Lund moved to Oslo. She works at Fjord Labs."},
                               {"role": "Assistant", "text": "Noted."}],
         "questions": [{"question": "Where does Kim Lund live?", "answer": "Oslo"},
                       {"question": "Where does Kim Lund work?", "answer": ["Fjord Labs", "Fjord"]}]},
        {"id": "s2", "transcript": "The garden opens on 12 May. Bo Stein runs the greenhouse.",
         "questions": [{"question": "When does the garden open?", "answer": ["12 May", "May 12"]}]},
        {"id": "s3", "turns": [{"role": "User", "text": "Change of plan: Kim Lund now works at Birch Co."}],
         "questions": [{"question": "Where does Kim Lund work?", "answer": "Birch Co", "kind": "update"},
                       {"question": "Where was the mentor of Kim Lund born?", "answer": "Rome", "kind": "two_hop"}]},
    ]  # fmt: skip
    path = tmp_path / "sessions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
