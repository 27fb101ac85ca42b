"""The MQAR probe (benchmarks/mqar.py): its examples ask what they stated, and its accuracy reads the answer
at the position that predicts it."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from benchmarks.mqar import batch, loss_and_hits


@pytest.mark.parametrize("kt", [1, 2])
def test_every_query_asks_a_stated_key_and_its_label_is_that_keys_value(kt):
    keys, values, n, w = 20, 30, 6, kt + 1
    ids, labels = batch(n, 16, keys, values, torch.Generator().manual_seed(0), key_tokens=kt)
    assert ids.shape == labels.shape == (16, 2 * n * w)
    for row, lab in zip(ids.tolist(), labels.tolist()):
        triples = [tuple(row[i : i + w]) for i in range(0, len(row), w)]
        stated = {t[:-1]: t[-1] for t in triples[:n]}
        assert len(stated) == n and all(1 <= x <= keys for k in stated for x in k)  # distinct keys, key tokens
        assert all(keys < v <= keys + values for v in stated.values())
        asked = [t[:-1] for t in triples[n:]]
        assert sorted(asked) == sorted(stated)  # every key asked once
        answers = [x for x in lab if x != -100]
        assert answers == [stated[k] for k in asked]
        assert all(x == -100 for x in lab[: n * w + kt])  # nothing before the first answer is scored


class _NextToken(torch.nn.Module):
    """Logits one-hot on the token `shift` places ahead (shift 1: a perfect next-token predictor)."""

    def __init__(self, vocab: int, shift: int):
        super().__init__()
        self.vocab, self.shift = vocab, shift

    def forward(self, input_ids):
        target = torch.roll(input_ids, -self.shift, dims=1)
        return SimpleNamespace(logits=F.one_hot(target, self.vocab).float() * 20)


def test_accuracy_is_one_for_a_perfect_predictor_and_near_zero_when_shifted():
    ids, labels = batch(4, 32, 10, 10, torch.Generator().manual_seed(1))
    loss, acc = loss_and_hits(_NextToken(21, 1), ids, labels)
    assert acc == 1.0 and loss.item() < 1e-3
    _, off = loss_and_hits(_NextToken(21, 0), ids, labels)  # predicts the current token: the key, never a value
    assert off == 0.0
