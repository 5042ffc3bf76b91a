"""The main job on the default profile: build what is missing, then tour what exists."""
from __future__ import annotations

from .config import Settings, info
from .notebook import show_split


def run_demo(settings: Settings) -> dict:
    from .data.world_store import build_world

    world = build_world(settings.data_dir, settings.world_config())
    summary = world.summary()
    print(f"mini world {summary['world_id']}: {summary['train']} training images, {summary['gallery']} gallery images")
    print(f"queries: {summary['queries']}")
    print(f"creative (held-out) pairs: {', '.join(summary['creative_pairs'])}")
    figures = {}
    for split in ("gallery", "knowledge", "creative"):
        fig, texts = show_split(world, split, n=8)
        path = settings.home / f"demo_{split}.png"
        fig.savefig(path, dpi=110)
        figures[split] = str(path)
        print(f"\n{split}:")
        for t in texts:
            print(f"  {t}")
    info(f"figures: {', '.join(figures.values())}")
    return {"world": summary, "figures": figures}
