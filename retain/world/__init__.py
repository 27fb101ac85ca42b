"""The synthetic testbed: entities, facts, sessions and questions, rendered from templates.

retain world --out runs/world          # writes entities.jsonl, sessions.jsonl, tokenizer/ and prints stats
"""

from retain.world.world import (
    ATTRIBUTE_SETS,
    ATTRIBUTES,
    Entity,
    Fact,
    Question,
    Session,
    World,
    WorldConfig,
    build_world,
)

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_SETS",
    "Entity",
    "Fact",
    "Question",
    "Session",
    "World",
    "WorldConfig",
    "build_world",
    "main",
]


def main(cfg: WorldConfig, out: str | None = None) -> None:
    """`retain world`: generate the world, train its tokenizer, save both, print the stats."""
    import time

    from retain.runs.rundir import RunDir
    from retain.world.io import build_tokenizer, save_world

    t0 = time.perf_counter()
    world = build_world(cfg)
    tok = build_tokenizer(world)
    path = save_world(world, RunDir.create("world", out).path, tok)
    stats = world.stats()
    width = max(map(len, stats))
    print(f"world written to {path} in {time.perf_counter() - t0:.1f}s")
    for k, v in stats.items():
        print(f"  {k.ljust(width)}  {v}")
    print(f"  {'vocab'.ljust(width)}  {len(tok)} ({cfg.tokenizer})")
