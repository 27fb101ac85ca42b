"""How text meets a model's tokenizer: the token every sequence starts with, the token that ends a written
text, where a generated answer stops, and how a question is put to the model.

Three styles:
- `world`: the convention `retain pretrain` trains the synthetic world's model on: BOS first,
  `<context> Q: <question> A:`, the answer ends with EOS.
- `plain`: a pretrained model as a text continuer. A sequence starts with the tokenizer's own BOS when the
  tokenizer adds one (Llama 3, Gemma), else with its end-of-document token, the separator pretraining put
  between documents (SmolLM2's and Qwen's `<|endoftext|>`), so what follows reads as a new document and the
  first position is an attention sink. `<context>\\n\\nQ: <question>\\nA:`; the answer stops at a newline.
- `chat`: the question (after the context) is a user turn of the tokenizer's chat template; the answer
  stops at the end of the assistant's turn (the tokenizer's EOS).

A few question-answer pairs on general knowledge (`shots`) may go before every question: a pretrained model
answers in a few words only after it has seen it done. They are the same for every medium and every
question, so they are part of the question, not of any memory.

The format is attached to the tokenizer (`use_format`), so every function that is handed a tokenizer reads
the same one (`text_format`); a tokenizer without one follows the world's convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DOC_ENDS = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>")
"""End-of-document tokens by convention, looked up in this order when a tokenizer adds no BOS."""

Style = Literal["world", "plain", "chat"]


@dataclass
class TextFormat:
    """The text conventions of one tokenizer in one style (build with `TextFormat.of`)."""

    style: Style
    start: list[int]
    """Ids in front of every sequence (a document, a query, a question)."""
    end: int
    """Id that ends a written text (a training document, an answer in world style)."""
    stops: list[int]
    """Ids that end a generated answer."""
    shots: list[tuple[str, str]] = field(default_factory=list)
    """(question, answer) pairs shown before every question."""
    answer_tokens: int = 8
    """Most tokens of a generated answer."""
    template: object = None
    """chat: the tokenizer whose chat template renders the messages."""

    @classmethod
    def of(cls, tokenizer, style: Style = "world", shots: list[tuple[str, str]] = (),
           answer_tokens: int | None = None) -> TextFormat:  # fmt: skip
        """The conventions of `tokenizer` in `style` (answers of `answer_tokens` at most: 8 in world style,
        where every answer is a few word tokens, else 24)."""
        tokens = answer_tokens or (8 if style == "world" else 24)
        if style == "world":
            return cls("world", [tokenizer.bos_token_id], tokenizer.eos_token_id, [tokenizer.eos_token_id],
                       list(shots), tokens)  # fmt: skip
        start, end = document_tokens(tokenizer)
        if style == "chat":
            if not getattr(tokenizer, "chat_template", None):
                from retain.errors import RetainError

                raise RetainError("prompt: chat needs a tokenizer with a chat template; this one has none, use "
                                  "prompt: plain")  # fmt: skip
            stops = sorted({tokenizer.eos_token_id, end})
            return cls("chat", start, end, stops, list(shots), tokens, tokenizer)
        return cls("plain", start, end, sorted({end, tokenizer.eos_token_id, *newline_ids(tokenizer)}),
                   list(shots), tokens)  # fmt: skip

    def prompt(self, question: str, context: str | None = None) -> tuple[str, str]:
        """The prompt of `question` as (head, tail): the head is what many questions share (the context and
        the shots), the tail the question itself; the model reads head then tail and answers."""
        if self.style == "world":
            head = " ".join(([context] if context else []) + [self.pair(q, a) for q, a in self.shots])
            return head, (" " if head else "") + f"Q: {question} A:"
        if self.style == "plain":
            head = (f"{context}\n\n" if context else "") + "".join(self.pair(q, a) + "\n" for q, a in self.shots)
            return head, f"Q: {question}\nA:"
        turns = [
            m for q, a in self.shots for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})
        ]
        user = {"role": "user", "content": f"{context}\n\n{question}" if context else question}
        full = self.render(turns + [user], generation=True)
        head = self.render(turns, generation=False) if turns else ""
        return (head, full[len(head) :]) if full.startswith(head) else ("", full)

    def pair(self, question: str, answer: str | None) -> str:
        """A question with its answer (or alone: None) as an example in a prompt."""
        if self.style == "world":
            return f"Q: {question} A: {answer}" if answer is not None else f"Q: {question}"
        return f"Q: {question}\nA: {answer}" if answer is not None else f"Q: {question}"

    def render(self, messages: list[dict], generation: bool) -> str:
        return self.template.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)

    def qa_text(self, question: str, answer: str) -> str:
        """A closed-book question with its answer as one text (replay, oracle queries, answer likelihood)."""
        head, tail = self.prompt(question)
        return head + tail + self.answer_text(answer)

    def answer_text(self, answer: str) -> str:
        """How an answer follows its prompt."""
        return f" {answer}"

    def summary_prompt(self, transcript: str) -> str:
        """What a model reads before writing its notes on a session."""
        if self.style == "world":
            return f"Transcript: {transcript} Notes:"
        return f"{transcript}\n\nA short summary of the facts above:"

    @property
    def seeds(self) -> tuple[str, ...]:
        """Self-study: the generic prompts a model continues after reading a session (three questions, then
        notes). Nothing of the session's ground truth is in them."""
        if self.style == "world":
            return (" Q:", " Q:", " Q:", " Notes:")
        return ("Q:",)

    def distill_heads(self, context: str) -> tuple[str, str]:
        """(teacher, student): the text before a self-study query when the teacher reads `context` and when the
        student reads nothing: in plain text both end with the shots, as every question is asked."""
        if self.style == "world":
            return context, ""
        if self.style == "chat":  # the chat template's turns are not a text to continue: queries stand alone
            return (f"{context}\n\n" if context else ""), ""
        head, _ = self.prompt("", None)
        return f"{context}\n\n{head}" if context else head, head

    @property
    def answer_lead(self) -> str:
        """Plain and chat self-study: what follows a question line before its answer."""
        return "\nA:"

    @property
    def study_demo(self) -> str:
        """Plain and chat self-study: a worked example (a text, a question on it, its answer) read before the
        session's text, so that a small model asks about what it read and answers in a few words. It is not
        part of the query the memory learns."""
        if self.style == "world":
            return ""
        return (
            "Mara Quill was born in Oslo and teaches chemistry at a school in Bergen.\n\n"
            "Q: Where does Mara Quill teach?\nA: Bergen\n\n"
        )

    def session_block(self, index: int, text: str) -> str:
        """One session among several in a prompt."""
        return f"Session {index + 1}. {text}" if self.style == "world" else f"Session {index + 1}:\n{text}"

    @property
    def block_separator(self) -> str:
        return " " if self.style == "world" else "\n\n"


def document_tokens(tokenizer) -> tuple[list[int], int]:
    """(start, end) of a document for a tokenizer read as plain text: the BOS it adds itself, else its
    end-of-document token, in front; that token (else EOS) at the end."""
    vocab = tokenizer.get_vocab()
    end = next((vocab[t] for t in DOC_ENDS if t in vocab), tokenizer.eos_token_id)
    probe = tokenizer("a")["input_ids"]
    bos = tokenizer.bos_token_id
    start = [bos] if bos is not None and probe[:1] == [bos] else [end]
    return start, end


def newline_ids(tokenizer) -> list[int]:
    """Every token whose text holds a newline (a plain-style answer stops at any of them)."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return [i for i, t in enumerate(texts) if "\n" in t]


def use_format(tokenizer, fmt: TextFormat):
    """Attach `fmt` to `tokenizer`: every function handed this tokenizer then follows it. Returns the tokenizer."""
    tokenizer.retain_format = fmt
    return tokenizer


def text_format(tokenizer) -> TextFormat:
    """The format attached to `tokenizer`, or the world's convention for it."""
    fmt = getattr(tokenizer, "retain_format", None)
    if fmt is None:
        fmt = use_format(tokenizer, TextFormat.of(tokenizer, "world")).retain_format
    return fmt
