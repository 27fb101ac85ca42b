"""Pretraining end to end on a tiny config: outputs, resume equivalence, refusal to overwrite.
`pytest tests/test_pretrain.py`"""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from retain.cli.main import main
from retain.config import from_dict, read_yaml
from retain.errors import RetainError
from retain.train.pretrain import PretrainConfig, pretrain

ROOT = Path(__file__).resolve().parents[1]
TINY = read_yaml(ROOT / "configs" / "smoke" / "pretrain.yaml")


def _cfg(**over):
    data = json.loads(json.dumps(TINY))
    for k, v in over.items():
        data.setdefault(k, {}).update(v)
    return from_dict(PretrainConfig, data)


def _weights(path):
    return load_file(str(path / "model" / "model.safetensors"))


def test_run_dir_outputs(tmp_path):
    s = pretrain(_cfg(), out=tmp_path / "run")
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "loss.png", "accuracy.png",
                 "model/config.json", "model/tokenizer.json", "world/sessions.jsonl",
                 "world/tokenizer/tokenizer.json"):  # fmt: skip
        assert (run / name).exists(), name
    for key in ("closed_book_acc", "open_book_acc", "heldout_template_acc", "params", "tokens_seen", "seconds"):
        assert key in s
    assert s["tokens_seen"] > 8 * 4 * 64
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "eval/closed_book_acc" in r] == [0, 4, 8]
    assert all("train/loss" in r for r in records if r["step"] % 2 == 0 and "eval/closed_book_acc" not in r)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_reaches_the_same_end(tmp_path, optimizer):
    cfg = _cfg(train={"optimizer": optimizer})
    straight = pretrain(cfg, out=tmp_path / "a")

    def interrupt(step):
        if step == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain(cfg, out=tmp_path / "b", on_step=interrupt)
    assert not (tmp_path / "b" / "summary.json").exists()
    resumed = pretrain(cfg, out=tmp_path / "b", resume=True)
    wa, wb = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    for key in ("closed_book_acc", "open_book_acc", "heldout_template_acc", "tokens_seen"):
        assert resumed[key] == straight[key]
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # nothing logged twice after the resume


def test_refuses_to_overwrite_and_resume_needs_a_checkpoint(tmp_path, capsys):
    cfg = _cfg(train={"steps": 2})
    pretrain(cfg, out=tmp_path / "r")
    with pytest.raises(RetainError, match="already holds a run"):
        pretrain(cfg, out=tmp_path / "r")
    with pytest.raises(RetainError, match="holds no run to resume"):
        pretrain(cfg, out=tmp_path / "empty", resume=True)
    assert not (tmp_path / "empty").exists()  # a start that fails leaves no run directory
    assert main(["pretrain", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err
    assert main(["pretrain", "--set", "train.lrr=1"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err


def test_corrupt_checkpoint_on_resume_is_one_line(tmp_path, capsys):
    cfg = _cfg(train={"steps": 4, "ckpt_every": 2})
    with pytest.raises(KeyboardInterrupt):
        pretrain(
            cfg, out=tmp_path / "c", on_step=lambda s: (_ for _ in ()).throw(KeyboardInterrupt) if s == 2 else None
        )
    ckpt = sorted((tmp_path / "c" / "ckpt").glob("*.safetensors"))[-1]
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert main(["pretrain", "--out", str(tmp_path / "c"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "is corrupt" in err and err.count("\n") == 1


def test_pack_drops_an_example_longer_than_a_row():
    from retain.train.data import pack

    long, short = [5] * 20, [6, 7, 8]
    ids, labels, pos = pack([(long, [True] * 20), (short, [True] * 3)], rows=1, seq_len=16, pad_id=0)
    assert ids[0, :3].tolist() == short and (ids[0, 3:] == 0).all()  # cut, it would lose its questions
    assert (labels[0, 3:] == -100).all()


def test_tokenize_is_each_segment_tokenized_alone():
    """tokenize encodes an example's segments in one call; the ids and the loss mask must be those of
    encoding each segment on its own (the EOS placeholder becoming the end token)."""
    from retain.train.data import tokenize
    from retain.world import examples as X
    from retain.world.tokenizer import train_tokenizer

    tok = train_tokenizer(["Ada Lovelace was born in Paris. Q: where? Rome"] * 3, kind="bpe", vocab_size=300)
    segs = [("Ada Lovelace was born in", False), (" Paris", True), (X.EOS, True), ("Q: where?", False), (" Rome", True)]
    ids, mask = tokenize(tok, segs)
    want, want_mask = [tok.bos_token_id], [False]
    for text, train in segs:
        piece = [tok.eos_token_id] if text == X.EOS else tok.encode(text, add_special_tokens=False)
        want, want_mask = want + piece, want_mask + [train] * len(piece)
    assert ids == want and mask == want_mask and ids.count(tok.eos_token_id) == 1
    assert tokenize(tok, [(X.EOS, True)], bos=False) == ([tok.eos_token_id], [True])


def test_packed_examples_do_not_see_each_other():
    from transformers import LlamaConfig, LlamaForCausalLM

    from retain.train.data import forward_packed, pack

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=2, intermediate_size=64)).eval()  # fmt: skip
    a, b = [5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16]
    ids, labels, pos = pack([(a, [True] * 7), (b, [True] * 5)], rows=1, seq_len=16, pad_id=0)
    assert pos[0].tolist() == list(range(7)) + list(range(5)) + list(range(4))
    with torch.no_grad():
        packed = forward_packed(model, ids, pos).logits[0, 7:12]
        alone = model(input_ids=torch.tensor([b])).logits[0]
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)


def test_a_study_reads_a_finished_run_back_only_for_the_config_it_was_trained_with(smoke_base):
    from retain.config import load_config
    from retain.train.pretrain import pretrain_or_resume

    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke" / "pretrain.yaml"
    summary = json.loads((smoke_base / "summary.json").read_text())
    assert pretrain_or_resume(load_config(PretrainConfig, smoke, ["train.threads=1"]), smoke_base) == summary
    with pytest.raises(RetainError, match=r"finished run of other values of train.lr \(.* -> 0.5\)"):
        pretrain_or_resume(load_config(PretrainConfig, smoke, ["train.lr=0.5"]), smoke_base)


def test_data_seed_draws_the_batches(tmp_path, monkeypatch):
    """`data_seed` is the seed the batches are drawn from (None: `seed`)."""
    import retain.train.pretrain as P

    seen = []
    real = P.pretrain_batch
    monkeypatch.setattr(P, "pretrain_batch", lambda *a, **k: seen.append(a[3]) or real(*a, **k))

    def stop(step):
        if step == 1:
            raise KeyboardInterrupt

    for data_seed, out in ((None, "plain"), (7, "data7")):
        seen.clear()
        with pytest.raises(KeyboardInterrupt):
            pretrain(from_dict(PretrainConfig, {**TINY, "data_seed": data_seed}), out=tmp_path / out, on_step=stop)
        assert set(seen) == {TINY.get("seed", 0) if data_seed is None else data_seed}
