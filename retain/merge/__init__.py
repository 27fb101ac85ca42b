"""Weight and adapter merging: EMA, linear, task arithmetic, SLERP, LiTI, TIES (`ops`); LoRA adapters as
products B A and back by truncated SVD (`lora`); WARP's pieces (`warp`); `retain merge` (`run`).
See docs/merge.md."""

from retain.merge.ops import (
    apply,
    ema,
    lerp,
    liti,
    slerp,
    slerp_many,
    task_arithmetic,
    task_vectors,
    ties,
    trim,
)

__all__ = ["apply", "ema", "lerp", "liti", "slerp", "slerp_many", "task_arithmetic", "task_vectors", "ties", "trim"]
