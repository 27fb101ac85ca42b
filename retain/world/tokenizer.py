"""The world's tokenizer, trained with `tokenizers` and wrapped as a Hugging Face fast tokenizer.

`word` (default) gives every word and punctuation mark its own id, so names, cities and dates are whole
tokens and sequences are short; `bpe` is byte-level BPE. `docs/world.md` and `docs/RESULTS.md` compare them
per CPU-second of pretraining. Either way the result is a `PreTrainedTokenizerFast` saved with the world,
so the rest of the package treats it like any local Hugging Face tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from retain.errors import RetainError

SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


def train_tokenizer(corpus: Iterable[str], kind: Literal["word", "bpe"] = "word",
                    vocab_size: int = 2048) -> PreTrainedTokenizerFast:  # fmt: skip
    """Train a word-level or byte-level BPE tokenizer on `corpus`; pad/unk/bos/eos get ids 0-3."""
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(special_tokens=SPECIALS, show_progress=False)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    else:
        raise RetainError(f"unknown tokenizer kind '{kind}'; choices: word, bpe")
    tok.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", bos_token="<bos>", eos_token="<eos>"
    )
