"""The length-split probe (benchmarks/length_split.py): its examples ask for the input copied or reversed, and
its exact match counts an example right only when every answer token is."""

import pytest
import torch

from benchmarks.length_split import BOS, FIRST, SEP, batch, scores


@pytest.mark.parametrize("task", ["copy", "reverse"])
def test_the_answer_is_the_input_copied_or_reversed_and_only_it_is_labelled(task):
    n = 5
    ids, labels = batch(task, n, 8, 6, torch.Generator().manual_seed(0))
    assert ids.shape == labels.shape == (8, 2 * n + 2)
    for row, lab in zip(ids.tolist(), labels.tolist()):
        assert row[0] == BOS and row[n + 1] == SEP and all(FIRST <= t < FIRST + 6 for t in row[1 : n + 1])
        x = row[1 : n + 1]
        assert row[n + 2 :] == (x if task == "copy" else x[::-1])
        assert lab[: n + 2] == [-100] * (n + 2) and lab[n + 2 :] == row[n + 2 :]


class _Oracle(torch.nn.Module):
    """Logits one-hot on the next token, wrong at `wrong` positions: (logits, None) as the backbone returns."""

    def __init__(self, vocab: int, wrong: int | None = None):
        super().__init__()
        self.vocab, self.wrong = vocab, wrong

    def forward(self, ids):
        nxt = torch.roll(ids, -1, dims=1)
        if self.wrong is not None:
            nxt[0, self.wrong] = (nxt[0, self.wrong] + 1) % self.vocab
        return torch.nn.functional.one_hot(nxt, self.vocab).float() * 20, None


def test_exact_match_needs_every_answer_token_and_ignores_the_input():
    ids, labels = batch("reverse", 4, 3, 5, torch.Generator().manual_seed(1))
    _, tok, em = scores(_Oracle(FIRST + 5), ids, labels)
    assert tok == 1.0 and em == 1.0
    _, tok, em = scores(_Oracle(FIRST + 5, wrong=7), ids, labels)  # position 7 predicts answer token 8
    assert em == pytest.approx(2 / 3) and tok == pytest.approx(11 / 12)
    _, tok, em = scores(_Oracle(FIRST + 5, wrong=2), ids, labels)  # an input position: not scored
    assert em == 1.0 and tok == 1.0
