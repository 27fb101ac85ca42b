"""Batched generation with a KV cache: the package's own loop, greedy or sampled.

Prompts are left-padded into one batch; positions come from the attention mask, so padded and unpadded
prompts get the same logits. Sampling takes Hugging Face logits processors (temperature, top-k, top-p,
typical) and an explicit `torch.Generator`.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache, LogitsProcessorList

from retain.models.device import autocast


@torch.no_grad()
def generate(
    model: torch.nn.Module,
    prompts: list[list[int]],
    *,
    eos_id: int | list[int],
    pad_id: int,
    max_new_tokens: int = 8,
    do_sample: bool = False,
    logits_processor: LogitsProcessorList | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 64,
    prefix: list[tuple[torch.Tensor, torch.Tensor]] | None = None,
    route: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> list[list[int]]:
    """Continue each prompt until `eos_id` or `max_new_tokens`.

    Args:
        model: a causal LM taking `input_ids`, `attention_mask`, `position_ids`, `cache`.
        prompts: token ids per prompt (any lengths).
        eos_id: the id (or ids) that stop a sequence; not included in its output.
        pad_id: fills the left of shorter prompts.
        max_new_tokens: most tokens generated per prompt.
        do_sample: sample from the processed distribution instead of taking the argmax.
        logits_processor: HF processors applied to the last-position scores (B, V) before choosing.
        generator: RNG for sampling; the global torch RNG when None. A CPU generator on a GPU model draws
            on the CPU (the same seed gives the same draws from the same probabilities on any device).
        batch_size: prompts per forward pass (sorted by length to limit padding).
        prefix: a KV cache every prompt continues, one (keys, values) pair of shape (1, kv_heads, P,
            head_dim) per layer (a soft prompt's or a trained KV prefix); prompts start at position P.
        route: with `prefix`, per prompt which of its P positions the prompt reads (len(prompts), P) and the
            position the prompt starts at (len(prompts),), instead of all P and P.

    Returns:
        The generated ids of each prompt, in the input order, without the eos.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stops = torch.tensor([eos_id] if isinstance(eos_id, int) else list(eos_id), dtype=torch.long, device=device)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[list[int]] = [[] for _ in prompts]
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = [prompts[i] for i in idx]
        rows = (route[0][idx], route[1][idx]) if route is not None else None
        with autocast(device.type):
            out = _generate_batch(model, batch, stops, pad_id, max_new_tokens, do_sample, logits_processor,
                                  generator, device, prefix, rows)  # fmt: skip
        for i, seq in zip(idx, out):
            results[i] = seq
    model.train(was_training)
    return results


def cache_kwarg(model: torch.nn.Module) -> str:
    """transformers >= 5.2x names the cache argument `cache`; older releases `past_key_values`. A PEFT model's
    forward takes **kwargs: the model it wraps names the argument."""
    import inspect

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(inner.forward).parameters else "past_key_values"


def kv_pairs(out) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (keys, values) of each layer in the cache a forward pass returned (`cache` in transformers >= 5.2x,
    `past_key_values` before)."""
    cache = out.cache if hasattr(out, "cache") else out.past_key_values
    return [(k, v) for k, v, *_ in cache]


@torch.no_grad()
def kv_of(model, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The KV cache of `ids` (from position 0): one (keys, values) pair of shape (1, kv_heads, len, head_dim)
    per layer, in the precision of the caller's autocast."""
    out = model(input_ids=torch.tensor([ids], device=next(model.parameters()).device), use_cache=True)
    return [(k.clone(), v.clone()) for k, v in kv_pairs(out)]


def prefix_fits(model: torch.nn.Module, length: int) -> bool:
    """Whether a KV prefix of `length` positions can be continued by `model`: always under full attention; with
    sliding-window layers (Gemma 3) only within the window, since such a layer keeps its last `sliding_window`
    positions and a cache rebuilt from them no longer knows where they sit."""
    window = getattr(model.config, "sliding_window", None)
    return not window or length <= window


def prefix_cache(prefix: list[tuple[torch.Tensor, torch.Tensor]] | None, batch: int,
                 config=None) -> DynamicCache:  # fmt: skip
    """A fresh cache holding `prefix` for each of `batch` rows (empty without a prefix); with the model's
    `config`, sliding-window layers get caches of their own kind."""
    if not prefix:
        return DynamicCache(config=config)
    rows = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix]
    if config is not None and len(rows) != config.num_hidden_layers:  # the backbone: one per K/V owner per pass
        config = None
    return DynamicCache(ddp_cache_data=rows, config=config)


def _generate_batch(model, batch, stops, pad_id, max_new_tokens, do_sample, processors, generator, device,
                    prefix=None, route=None):  # fmt: skip
    B, L = len(batch), max(len(p) for p in batch)
    ids = torch.full((B, L), pad_id, dtype=torch.long)
    mask = torch.zeros((B, L), dtype=torch.long)
    for b, p in enumerate(batch):
        ids[b, L - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[b, L - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    position = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, L)
    cache = prefix_cache(prefix, B, model.config)
    if prefix:  # the prefix sits at positions 0..P-1, visible to every row unless routed
        P = prefix[0][0].shape[2]
        seen, start = route if route is not None else (torch.ones((B, P)), torch.full((B,), P))
        mask = torch.cat([seen.to(mask.dtype).to(device), mask], dim=1)
        position = position + start.to(device)[:, None]
    kw = cache_kwarg(model)
    out = model(input_ids=ids, attention_mask=mask, position_ids=position, use_cache=True, logits_to_keep=1,
                **{kw: cache})  # fmt: skip
    seen = ids  # what processors such as repetition penalties look at
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    generated = []
    for step in range(max_new_tokens):
        scores = out.logits[:, -1, :].float()  # (B, V)
        if processors:
            scores = processors(seen, scores)
        if do_sample:
            probs = torch.softmax(scores, dim=-1)
            if generator is not None and generator.device != probs.device:  # a CPU generator: draw there
                token = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
            else:
                token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            token = scores.argmax(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        generated.append(token)
        finished |= torch.isin(token, stops)
        if finished.all() or step == max_new_tokens - 1:
            break
        seen = torch.cat([seen, token[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], dim=1)
        position = position[:, -1:] + 1
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=position, use_cache=True,
                    **{kw: cache})  # fmt: skip
    tokens = torch.stack(generated, dim=1).tolist() if generated else [[] for _ in range(B)]
    result, ends = [], set(stops.tolist())
    for row in tokens:
        seq = []
        for t in row:
            if t in ends:
                break
            seq.append(t)
        result.append(seq)
    return result
