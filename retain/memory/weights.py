"""Weight-like media written by SFT: a LoRA adapter (PEFT), a trained soft prompt, or the full weights.

They share one write: `steps` of next-token loss on copies of the session's material (augmented), mixed at
`replay` with earlier sessions' material and at `base_replay` with base-knowledge text (the loop passes
biographies and QA pairs of known people). They differ
in what is trainable and in how a batch reaches the model.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer

from retain.errors import RetainError
from retain.fermi.formulas import lora_params, resolve_targets, soft_prompt_params
from retain.memory import distill as D
from retain.memory import storage
from retain.memory.base import Material, Memory, ReplaySource, Timer, WriteCost, as_replay
from retain.memory.names import sentences
from retain.merge import lora as LM
from retain.merge import ops
from retain.models.device import autocast, device_of
from retain.models.generate import kv_pairs
from retain.models.text import text_format
from retain.runs import distributed
from retain.runs.seed import derive_seed
from retain.train.data import right_pad
from retain.train.optim import set_lr
from retain.world import render as R


def sft_batch(tokenizer, texts: list[str], bos: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids (start text end, or text end: the tokenizer's text format), attention mask and labels
    (-100 on padding)."""
    fmt = text_format(tokenizer)
    start = list(fmt.start) if bos else []
    rows = [start + tokenizer(t, add_special_tokens=False)["input_ids"] + [fmt.end] for t in texts]
    ids, mask = right_pad(rows, tokenizer.pad_token_id)
    return ids, mask, ids.masked_fill(mask == 0, -100)


def augment(material: Material, kind: str, rng: random.Random) -> str:
    """One training copy of the material: as is, sentences shuffled, or facts re-rendered and shuffled."""
    if kind == "paraphrase" and material.facts:
        updates = {(f.entity, f.attribute) for f in material.updates or []}
        parts = [(R.update_sentence if (f.entity, f.attribute) in updates else R.fact_sentence)(
            f.entity, f.attribute, f.value, rng) for f in material.facts]  # fmt: skip
    elif kind in ("shuffle", "paraphrase"):
        parts = sentences(material.text)
    else:
        return material.text
    rng.shuffle(parts)
    return " ".join(parts)


class WeightMemory(Memory):
    """A medium whose memory is trained parameters. Subclasses say which and how a batch is run."""

    def __init__(self, model, tokenizer, cfg, base_text: ReplaySource | Callable[[random.Random], str] | None = None,
                 seed: int = 0):  # fmt: skip
        super().__init__(model, tokenizer, cfg)
        self.base_text, self.seed = as_replay(base_text), seed
        self.written: list[Material] = []
        self.session_teachers: list = []  # distill: each written session's queries with teacher top-k (replay)
        self.base_teachers: list = []  # distill: base-knowledge text with the bare model's top-k

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def liti_pairs(self) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        """(parameter, its value in the base model) for every parameter LiTI moves; none by default."""
        return []

    @contextmanager
    def bare(self):
        """Inside the block the medium is the base model (its memory switched off). Full fine-tuning has no
        switch: it is called only before the first write, when the weights are still the base's."""
        yield self

    @contextmanager
    def liti(self, eta: float):
        """Inside the block the memory is theta_init + eta (theta - theta_init) (WARP's LiTI): eta 0 is the base
        model, 1 the memory as written. The written memory is restored on exit."""
        pairs = self.liti_pairs()
        if not pairs:
            raise ValueError(f"{self.cfg.kind}: LiTI interpolates towards the base model; only lora and full have one")
        saved = [p.detach().clone() for p, _ in pairs]
        with torch.no_grad():
            for p, p0 in pairs:
                p.copy_(ops.liti(p0, p, eta))
        try:
            yield self
        finally:
            with torch.no_grad():
                for (p, _), v in zip(pairs, saved):
                    p.copy_(v)

    def params(self) -> int:
        return sum(p.numel() for p in self.trainable())

    def loss(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Next-token cross-entropy (the SFT write)."""
        logits = self.logits(ids, mask)[:, :-1]
        labels = labels[:, 1:].to(logits.device)
        return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)

    def teacher_context(self, material: Material) -> list[int]:
        """What the distillation teacher sees before a query: the start token and the session transcript."""
        if not material.transcript.strip():
            raise RetainError(f"session {material.session + 1} has no transcript text to distill from")
        teacher, _ = self.fmt.distill_heads(material.transcript)
        return self.start + self.tokenizer(teacher, add_special_tokens=False)["input_ids"]

    def student_head(self) -> list[int]:
        """What the student reads between the start token and a session query (plain text: the shots)."""
        _, student = self.fmt.distill_heads("")
        return self.tokenizer(student, add_special_tokens=False)["input_ids"] if student else []

    def batch_texts(self, material: Material, rng: random.Random) -> list[str]:
        """`batch_size` texts: the material augmented, or rehearsal at the replay ratios."""
        cfg, texts = self.cfg, []
        for _ in range(cfg.batch_size):
            u = rng.random()
            if u < cfg.replay and self.written:
                texts.append(augment(rng.choice(self.written), cfg.augment, rng))
            elif cfg.replay <= u < cfg.replay + cfg.base_replay and self.base_text is not None:
                texts.append(self.base_text(rng))
            else:
                texts.append(augment(material, cfg.augment, rng))
        return texts

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Right-padded ids (BOS text EOS), attention mask and labels (-100 on padding)."""
        return sft_batch(self.tokenizer, texts, self.bos)

    def write(self, material: Material) -> WriteCost:
        material = material.as_source(self.cfg.source)
        if not material.text.strip():
            raise RetainError(f"session {material.session + 1}: the writer produced no text to write")
        rng = random.Random(derive_seed(self.seed, "write", self.cfg.name, material.session))
        with Timer() as t:
            if self.cfg.objective == "distill":
                step, tokens = self.distill_steps(material, rng)
            else:
                step, tokens = (lambda: self.sft_step(material, rng)), 0
            tokens += self.optimize(step)
            self.store()
        self.written.append(material)
        return WriteCost(t.seconds, tokens)

    def store(self) -> None:
        """The memory as stored: its tensors replaced by what they read back as at `cfg.dtype`."""
        storage.store(self.stored_tensors(), self.cfg.dtype)

    def stored_tensors(self) -> list[torch.Tensor]:
        """The tensors the memory stores (what `nbytes` counts)."""
        return self.trainable()

    def sft_step(self, material: Material, rng: random.Random) -> tuple[torch.Tensor, int]:
        """Next-token loss on one batch of the material (augmented, with replay), and its tokens. Under
        torchrun this rank's rows of the batch, weighted by their share of its labelled positions."""
        ids, mask, labels = self.encode(self.batch_texts(material, rng))
        tokens, total = int(mask.sum()), int((labels[:, 1:] != -100).sum())
        ids, mask, labels = distributed.my_rows(ids, mask, labels)
        return self.loss(ids, mask, labels) * (int((labels[:, 1:] != -100).sum()) / total), tokens

    def optimize(self, step: Callable[[], tuple[torch.Tensor, int]]) -> int:
        """`cfg.steps` AdamW steps (lr as `cfg.lr_at` gives it, bf16 autocast where the run's precision says) on the
        loss `step()` returns with the tokens of its batch; returns the tokens of all steps. Under torchrun each
        rank's loss is its share of the batch's, and the gradients are summed over ranks before the step."""
        params = self.trainable()
        opt = torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=0.0)
        self.constrain()
        self.model.train()
        tokens = 0
        for i in range(self.cfg.steps):
            set_lr(opt, self.cfg.lr_at(i))
            with autocast(params[0].device.type):
                loss, n = step()
            loss.backward()
            distributed.sum_grads(params)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            self.constrain()
            tokens += n
        self.model.eval()
        return tokens

    def constrain(self) -> None:
        """Put the trainable parameters back where the medium allows them (before the first step and after each);
        nothing by default."""

    def distill_steps(self, material: Material, rng: random.Random):
        """Queries and teacher top-k for this session (computed once), and the step function of the write:
        a batch of this session's queries, mixed at `replay` with earlier sessions' and at `base_replay`
        with base-knowledge text distilled from the model as it was before the first write."""
        cfg = self.cfg
        self.model.eval()
        context = self.teacher_context(material)
        queries, spent = D.query_ids(cfg.queries, self, material, context, cfg.n_queries, rng)
        self.queries = [self.tokenizer.decode(q) for q in queries]
        if cfg.focus == "entity":
            context = D.focused_contexts(self, material.transcript, queries)
        elif cfg.focus == "cue" and (cues := D.cue_sentences(self, material, len(queries))):
            context = D.cue_contexts(self, cues)
        layers = cfg.matched_layers(self.model.config)
        teachers, taught = D.teach(self, context, queries, cfg.top_k, temperature=cfg.teacher_temperature,
                                   layers=layers, head=self.student_head())  # fmt: skip
        if not teachers:
            raise RetainError(f"session {material.session + 1}: no query of two or more tokens to distill on")
        base_pool, more = self.base_pool(material, rng)
        taught += more
        pools = (teachers, [t for ts in self.session_teachers for t in ts], base_pool)
        self.session_teachers.append(teachers)

        def step() -> tuple[torch.Tensor, int]:
            batch = []
            for _ in range(cfg.batch_size):
                u = rng.random()
                pool = (
                    pools[1]
                    if u < cfg.replay and pools[1]
                    else (pools[2] if cfg.replay <= u < cfg.replay + cfg.base_replay and pools[2] else pools[0])
                )
                batch.append(rng.choice(pool))
            mine, total = distributed.my_share(batch), sum(len(t.ids) - t.first for t in batch)
            share = sum(len(t.ids) - t.first for t in mine) / total  # of the positions the KL averages over
            loss = D.student_loss(self, mine, layers, cfg.hidden_weight) * share
            return loss, sum(len(t.head) + len(t.ids) for t in batch)

        return step, spent + taught

    def base_pool(self, material: Material, rng: random.Random) -> tuple[list, int]:
        """distill with base_replay: the base-knowledge teachers this write replays, and the forward tokens
        spent on them. Drawn once, at the first write, and taught by the model without any memory."""
        cfg = self.cfg
        if cfg.base_replay and not self.base_teachers and self.base_text is not None:
            k = round(cfg.base_study * cfg.base_queries)
            world = self.fmt.style == "world"
            studied = [self.base_text.settled(rng) for _ in range(k)] if world else []  # nobody a session updates
            drawn = [self.base_text(rng) for _ in range(cfg.base_queries - k)]

            def enc(texts):
                return [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]

            def teach(context, queries, head=()):
                return D.teach(self, context, queries, cfg.top_k, head=head, temperature=cfg.teacher_temperature)

            with self.bare():  # the teacher of base knowledge is the model without any memory
                if world:
                    study, spent = D.base_study(self, studied, rng) if k else ([], 0)
                    self.base_teachers, more = teach(self.start, study + enc(drawn))
                else:  # a pretrained model asks itself general questions, answered in the asked form
                    study, spent = D.general_study(self, k, rng) if k else ([], 0)
                    behind = [cfg.base_asked and self.base_text.asked(t) for t in drawn]  # read behind the shots
                    pairs = enc([t for t, b in zip(drawn, behind) if b])
                    read = enc([t for t, b in zip(drawn, behind) if not b])
                    head = self.student_head()
                    asked, more = teach(self.start + head, study + pairs, head)
                    texts, more2 = teach(self.start, read)
                    self.base_teachers, more = asked + texts, more + more2
            return self.fresh(self.base_teachers), spent + more
        return self.fresh(self.base_teachers), 0

    def fresh(self, teachers: list) -> list:
        """`teachers` without those about a person a session read since they were made updates (made once,
        at the first write, their teacher holds the value from before)."""
        if self.base_text is None:
            return teachers
        return [t for t in teachers if not self.base_text.stale(self.tokenizer.decode(t.ids))]


def top_directions(gram: torch.Tensor, energy: float) -> torch.Tensor:
    """The orthonormal eigenvectors (columns) of the symmetric `gram` with the largest eigenvalues, as few as
    carry `energy` of its trace."""
    values, vectors = torch.linalg.eigh(gram.double())
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)
    k = int((values.cumsum(0) < energy * values.sum()).sum()) + 1
    return vectors[:, :k].to(gram.dtype)


class LoraMemory(WeightMemory):
    """A PEFT LoRA adapter; the base weights stay frozen. `adapters: single` trains one adapter on every
    session in turn (continued training); `per_session` trains a fresh rank-r adapter on each session (on the
    base model alone) and consolidates it into the memory adapter (rank `memory_rank`) by `merge`, on the
    products B A, re-factored by truncated SVD (retain.merge)."""

    SESSION = "session"

    def __init__(self, model, tokenizer, cfg, **kw):
        targets = list(resolve_targets(cfg.targets))
        self.session_lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=targets)
        self.rank = (cfg.memory_rank or cfg.rank) if cfg.adapters == "per_session" else cfg.rank
        memory = LoraConfig(r=self.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=targets)
        super().__init__(get_peft_model(model, memory), tokenizer, cfg, **kw)
        self.svd_errors: list[float] = []
        """Per consolidation, the largest relative error of the truncated SVD over the adapted modules."""
        self.guarded: list[tuple[LoraLayer, torch.Tensor]] | None = None
        """null_space: each adapted module with the orthonormal input directions its A is kept off (computed
        once)."""

    def constrain(self) -> None:
        """null_space: every adapter's A (the one being trained and the memory alike) projected off the
        directions that carry `null_space` of the general inputs' energy, so B A x = 0 for those inputs."""
        if not self.cfg.null_space:
            return
        if self.guarded is None:
            self.guarded = self.general_directions()
        with torch.no_grad():
            for module, U in self.guarded:
                for lin in module.lora_A.values():  # per_session adds and deletes adapters: read them each time
                    lin.weight -= (lin.weight @ U) @ U.T

    @torch.no_grad()
    def general_directions(self, texts: int = 256) -> list[tuple[LoraLayer, torch.Tensor]]:
        """Each adapted module with the top eigenvectors of X^T X over `texts` base-knowledge texts read by the
        bare model (X: the module's inputs at every real position), as many as carry `null_space` of the
        trace. Uncentred, as AlphaEdit's K0 K0^T."""
        if self.base_text is None:
            raise RetainError(f"media '{self.cfg.name}': null_space needs base-knowledge text to protect, and "
                              "this run passes none; remove null_space")  # fmt: skip
        layers = {n: m for n, m in self.model.named_modules() if isinstance(m, LoraLayer)}
        grams: dict[str, torch.Tensor] = {}
        keep: list[torch.Tensor] = []  # the current batch's real positions

        def add(name, module, args):
            x = args[0][keep[0].to(args[0].device)].float()
            with torch.autocast(x.device.type, enabled=False):  # the forward runs under autocast; the sums in fp32
                grams[name] = grams.get(name, 0) + x.T @ x

        rng = random.Random(derive_seed(self.seed, "null_space", self.cfg.name))
        drawn = [self.base_text(rng) for _ in range(texts)]
        hooks = [m.base_layer.register_forward_pre_hook(functools.partial(add, n)) for n, m in layers.items()]
        try:
            with self.bare():
                for i in range(0, len(drawn), self.cfg.batch_size):
                    ids, mask, _ = self.encode(drawn[i : i + self.cfg.batch_size])
                    keep[:] = [mask.bool()]
                    with autocast(device_of(self.model)):
                        self.logits(ids, mask)
        finally:
            for h in hooks:
                h.remove()
        return [(m, top_directions(grams[n], self.cfg.null_space)) for n, m in layers.items()]

    def write(self, material: Material) -> WriteCost:
        if self.cfg.adapters == "single":
            return super().write(material)
        self.model.add_adapter(self.SESSION, self.session_lora)
        self.model.set_adapter(self.SESSION)  # only the new adapter is active and trainable
        cost = super().write(material)
        with Timer() as t:
            self.consolidate(n=len(self.written) - 1)
            self.store()
        return WriteCost(cost.seconds + t.seconds, cost.tokens)

    def stored_tensors(self) -> list[torch.Tensor]:
        return [p for n, p in self.model.named_parameters() if "lora_" in n and ".default." in n]

    def consolidate(self, n: int) -> None:
        """Merge the session adapter into the memory adapter, which holds n sessions, and delete it."""
        cfg, scale = self.cfg, {"lora_alpha": self.cfg.alpha}
        new = LM.products(get_peft_model_state_dict(self.model, adapter_name=self.SESSION), scale)
        mem = LM.products(get_peft_model_state_dict(self.model, adapter_name="default"), scale)
        if cfg.merge == "average":  # every session weighs 1 / (n + 1)
            merged = ops.task_arithmetic_dicts([mem, new], [n / (n + 1), 1 / (n + 1)])
        elif cfg.merge == "sum":  # task arithmetic with weight 1: nothing is diluted, everything interferes
            merged = ops.task_arithmetic_dicts([mem, new], [1.0, 1.0])
        elif cfg.merge == "slerp":  # WARP's iterated SLERP: the new session weighs 1 / (n + 1)
            merged = ops.slerp_dicts(mem, new, 1 / (n + 1))
        elif cfg.merge == "ties":  # weights n : 1 as in the average, but trimmed, sign-elected, disjoint
            merged = ops.ties_dicts([mem, new], cfg.merge_density, [float(n), 1.0])
        else:  # ema
            merged = ops.ema_dicts(mem, new, cfg.merge_beta) if n else new
        state, errors = LM.factor(merged, self.rank, scale)
        set_peft_model_state_dict(self.model, state, adapter_name="default")
        self.svd_errors.append(max(errors.values()))
        self.model.set_adapter("default")
        self.model.delete_adapter(self.SESSION)

    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.model.named_parameters() if p.requires_grad and "lora_" in n]

    @contextmanager
    def bare(self):
        with self.model.disable_adapter():
            yield self

    def liti_pairs(self) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        # the update scale * B A is linear in B: moving B towards 0 by eta moves the model towards the base
        return [(p, torch.zeros_like(p)) for n, p in self.model.named_parameters() if ".lora_B.default." in n]

    def nbytes(self) -> int:
        return storage.stored_bytes(lora_params(self.arch, self.rank, self.cfg.targets), self.cfg.dtype)


class FullMemory(WeightMemory):
    """Every weight of the model is trained: the memory is a dense copy (or delta) of the model."""

    def __init__(self, model, tokenizer, cfg, **kw):
        model.requires_grad_(True)
        super().__init__(model, tokenizer, cfg, **kw)
        self.init = {n: p.detach().clone() for n, p in model.named_parameters()}

    def liti_pairs(self) -> list[tuple[torch.nn.Parameter, torch.Tensor]]:
        return [(p, self.init[n]) for n, p in self.model.named_parameters()]

    def nbytes(self) -> int:
        return storage.stored_bytes(self.arch.param_count(), self.cfg.dtype)


class SoftPromptMemory(WeightMemory):
    """P trained input embeddings in front of every prompt (prompt tuning); the model stays frozen.

    At answer time the prompt's KV cache is computed once and every question continues it."""

    def __init__(self, model, tokenizer, cfg, **kw):
        model.requires_grad_(False)
        super().__init__(model, tokenizer, cfg, **kw)
        emb = model.get_input_embeddings().weight
        g = torch.Generator().manual_seed(derive_seed(self.seed, "soft_prompt", cfg.name))
        init = torch.randint(0, emb.shape[0], (cfg.prompt_tokens,), generator=g)  # init from vocabulary rows
        self.prompt = torch.nn.Parameter(emb[init.to(emb.device)].detach().float().clone())
        self._bare = False  # inside bare(): the model without the prompt

    def trainable(self) -> list[torch.nn.Parameter]:
        return [self.prompt]

    @contextmanager
    def bare(self):
        self._bare = True
        try:
            yield self
        finally:
            self._bare = False

    def forward(self, ids, mask):
        if self._bare:
            return super().forward(ids, mask)
        B, P = ids.shape[0], self.prompt.shape[0]
        embeds = torch.cat([self.prompt.expand(B, -1, -1), self.model.get_input_embeddings()(ids)], dim=1)
        mask = torch.cat([mask.new_ones((B, P)), mask], dim=1)
        return self.model(inputs_embeds=embeds, attention_mask=mask).logits[:, P:]

    @torch.no_grad()
    def prefix(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return kv_pairs(self.model(inputs_embeds=self.prompt[None], use_cache=True))

    def nbytes(self) -> int:
        return storage.stored_bytes(soft_prompt_params(self.arch, self.cfg.prompt_tokens), self.cfg.dtype)
