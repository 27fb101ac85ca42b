"""The MQAR probe (benchmarks/mqar.py): its examples ask what they stated, and its accuracy reads the answer
at the position that predicts it."""

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from benchmarks.mqar import batch, loss_and_hits


def test_every_query_asks_a_stated_key_and_its_label_is_that_keys_value():
    keys, values, n = 20, 30, 6
    ids, labels = batch(n, 16, keys, values, torch.Generator().manual_seed(0))
    assert ids.shape == labels.shape == (16, 4 * n)
    for row, lab in zip(ids.tolist(), labels.tolist()):
        stated = dict(zip(row[0 : 2 * n : 2], row[1 : 2 * n : 2]))
        assert len(stated) == n and all(1 <= k <= keys for k in stated)  # distinct keys, from the key range
        assert all(keys < v <= keys + values for v in stated.values())
        asked = row[2 * n :: 2]
        assert sorted(asked) == sorted(stated)  # every key asked once
        answers = [lab[i] for i in range(len(lab)) if lab[i] != -100]
        assert answers == [stated[k] for k in asked]
        assert all(lab[i] == -100 for i in range(2 * n + 1))  # nothing before the first answer is scored


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
