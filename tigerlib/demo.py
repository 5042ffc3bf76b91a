"""The main job on the default profile: build what is missing, then tour what exists."""
from __future__ import annotations

import numpy as np

from .config import Settings, info
from .notebook import reconstructions, show_split


def run_demo(settings: Settings) -> dict:
    from .data.world_store import build_world
    from .methods.dense import DenseRetriever
    from .zoo import build_zoo, load_dual_encoder, load_visual_tokenizer
    from .viz import image_grid

    world = build_world(settings.data_dir, settings.world_config())
    summary = world.summary()
    print(f"mini world {summary['world_id']}: {summary['train']} training images, {summary['gallery']} gallery images")
    print(f"queries: {summary['queries']}")
    print(f"creative (held-out) pairs: {', '.join(summary['creative_pairs'])}")
    figures = {}

    def save(fig, name):
        path = settings.home / f"demo_{name}.png"
        fig.savefig(path, dpi=110)
        figures[name] = str(path)

    for split in ("gallery", "knowledge", "creative"):
        fig, texts = show_split(world, split, n=8)
        save(fig, split)
        print(f"\n{split}:")
        for t in texts:
            print(f"  {t}")

    status = build_zoo(settings, world=world)
    print("\nmodel zoo:")
    for name, m in status["models"].items():
        print(f"  {name:<17} {m['train_seconds']}s  {m['metrics']}")
    encoder, tokenizer = load_dual_encoder(settings), load_visual_tokenizer(settings)
    save(reconstructions(tokenizer, world.val.images[:8]), "reconstructions")

    retriever = DenseRetriever(encoder, world.gallery.images)
    q = world.queries
    picks = [int(np.flatnonzero(q.kind == kind)[0]) for kind in ("knowledge", "common", "creative")]
    idx, scores = retriever.top_k([q.texts[i] for i in picks], k=4)
    print("\ndense retrieval (top 4 gallery images per prompt):")
    images, titles = [], []
    for row, i in enumerate(picks):
        hit = "hit" if np.isin(idx[row, 0], q.hits[i]) else "no exact match in the gallery" if len(q.hits[i]) == 0 else "miss"
        print(f"  [{q.kind[i]}] {q.texts[i]!r} -> {idx[row].tolist()} (top-1: {hit}; gold decision: {q.label[i]})")
        images += [q.images[i]] + list(world.gallery.images[idx[row]])
        titles += [f"prompt: {q.texts[i]}"] + [f"#{j} {s:.2f}" for j, s in zip(idx[row], scores[row])]
    save(image_grid(np.stack(images), titles, ncols=5), "retrieval")

    # the same prompts through TIGeR (retrieval by generation) and the diffusion model
    from .methods.tiger import TIGeR
    from .zoo import load_lmm, load_text_to_image

    tiger = TIGeR.from_images(load_lmm(settings), tokenizer, world.gallery.images)
    prompts = [q.texts[i] for i in picks]
    generated = load_text_to_image(settings)(prompt=prompts, seed=settings.seed).images
    print("\nTIGeR (beam search over visual tokens + reverse re-ranking) and generation:")
    images, titles = [], []
    for row, i in enumerate(picks):
        answer = tiger.retrieve(prompts[row], num_beams=100)
        top = answer.top1
        hit = "hit" if top in set(q.hits[i].tolist()) else "no exact match in the gallery" if len(q.hits[i]) == 0 else "miss"
        print(f"  [{q.kind[i]}] {prompts[row]!r} -> TIGeR top-1 #{top} ({hit}, {answer.seconds:.1f}s)")
        images += [q.images[i], world.gallery.images[idx[row, 0]], world.gallery.images[top], generated[row]]
        titles += [f"prompt: {prompts[row]}", "dense top-1", "TIGeR top-1", "generated"]
    save(image_grid(np.stack(images), titles, ncols=4), "tiger_and_generation")
    info(f"figures: {', '.join(figures.values())}")
    return {"world": summary, "zoo": status, "figures": figures}
