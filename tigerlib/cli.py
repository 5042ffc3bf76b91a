"""The ``tiger`` command (also ``python -m tigerlib``).

Every ``--json`` command prints exactly one JSON object on stdout; logs and progress go to stderr.
"""
from __future__ import annotations

import argparse
import json
import sys

from .config import get_settings, info
from .errors import TigerError


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=False))


def _world_overrides(args) -> dict:
    keys = ("image_size", "n_train", "n_gallery", "n_entities")
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def cmd_info(args, s) -> None:
    print(s.describe())


def cmd_world_build(args, s) -> None:
    from .data.world_store import build_world

    world = build_world(s.data_dir, s.world_config(**_world_overrides(args)), force=args.force)
    summary = world.summary() | {"built": world.built_now}
    _print_json(summary) if args.json else print("\n".join(f"{k}: {v}" for k, v in summary.items()))


def cmd_world_show(args, s) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from .data.world_store import load_world
    from .notebook import show_split

    world = load_world(s.data_dir, s.world_config(**_world_overrides(args)))
    fig, texts = show_split(world, args.split, args.n, seed=args.seed_offset)
    out = args.out or str(s.home / f"world_{args.split}.png")
    fig.savefig(out, dpi=110)
    for t in texts:
        print(t)
    info(f"saved a grid of {len(texts)} {args.split} images to {out}")


def cmd_bench_world(args, s) -> None:
    from .bench import bench_world

    result = bench_world(n=args.n, image_size=args.image_size or 32, seed=s.seed)
    _print_json(result) if args.json else print(f"{result['images_per_second']:.0f} images/s at {result['image_size']}px (n={result['n']}, one core)")


def cmd_bench_zoo(args, s) -> None:
    from .zoo import bench_zoo

    result = bench_zoo(s, steps=args.steps, only=args.only, evaluate=not args.no_eval)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, r in result["models"].items():
            print(f"{name:17s} {r['steps_per_second']:6.2f} steps/s  phases {r['phases']}  eval {r.get('evaluation_seconds', '-')} s  build ~{r['estimated_build_seconds']:.0f} s")
        print(f"whole zoo ~{result['estimated_zoo_seconds']:.0f} s")


def cmd_bench_trie(args, s) -> None:
    from .decoding.trie_benchmark import format_results, run_trie_benchmark

    result = run_trie_benchmark(sizes=tuple(args.sizes), beams=args.beams, seed=s.seed)
    _print_json(result) if args.json else print("\n".join(format_results(result)))


def _tiger_models(s):
    from .zoo import load_dual_encoder, load_lmm, load_visual_tokenizer

    return load_lmm(s), load_visual_tokenizer(s), load_dual_encoder(s)


def cmd_eval_tiger(args, s) -> None:
    from .data.world_store import load_world
    from .evaluation.tiger_eval import evaluate_tiger

    from .zoo import load_judge

    lmm, vq, enc = _tiger_models(s)
    result = evaluate_tiger(lmm, vq, enc, load_world(s.data_dir, s.world_config()), n_queries=args.n_queries, num_beams=args.beams, rerank=args.rerank,
                            eta=args.eta, judge=load_judge(s))
    if args.json:
        _print_json(result)
        return
    for kind in ("knowledge", "common"):
        r = result[kind]
        judged = r["judge"]["fbs_rerank"]
        print(f"{kind}: proxy R@1 forward {r['proxy']['forward']['r1']:.3f} pmi {r['proxy']['pmi']['r1']:.3f} reverse {r['proxy']['reverse']['r1']:.3f} | "
              f"beam search R@1 {r['fbs']['r1']:.3f}, re-ranked {r['fbs_rerank']['r1']:.3f} | dense R@1 {r['dense']['r1']:.3f} | "
              f"judge on the re-ranked top-1: {judged['entity'] if kind == 'knowledge' else judged['all']}")
        held = result.get("heldout_language", {}).get(kind)
        if held:
            print(f"{kind}, held-out phrasings: TIGeR R@1 {held['fbs_rerank']['r1']:.3f} ({held['ratio_r1']['fbs_rerank']}x in-language) | "
                  f"dense R@1 {held['dense']['r1']:.3f} ({held['ratio_r1']['dense']}x) | known-word share {held['known_word_share']}")


def cmd_eval_grace(args, s) -> None:
    from .data.world_store import load_world
    from .evaluation.grace_eval import evaluate_grace
    from .methods import DenseRetriever
    from .zoo import load_grace, load_judge, zoo_status

    world = load_world(s.data_dir, s.world_config())
    types = args.types or None
    models = load_grace(s, types)
    lmm, vq, enc = _tiger_models(s)
    status = zoo_status(s)["models"]
    manifests = {t: status[f"grace_{t}"] for t in models}
    result = evaluate_grace(models, DenseRetriever(enc, world.gallery.images), world, judge=load_judge(s), manifests=manifests,
                            lmm=lmm, visual_tokenizer=vq, dual_encoder=enc, forgetting_types=args.forgetting_types, forgetting_steps=args.forgetting_steps, seed=s.seed)
    if args.json:
        _print_json(result)
        return
    print(f"{'type':<11} {'knowledge R@1/5/10':<20} {'common R@1/5/10':<20} {'ms/query':>8}")
    for t, r in [*result["types"].items(), ("dense", result["dense"])]:
        k, c = r["knowledge"], r["common"]
        print(f"{t:<11} {k['r1']:.2f}/{k['r5']:.2f}/{k['r10']:.2f}       {c['r1']:.2f}/{c['r5']:.2f}/{c['r10']:.2f}       {r['ms_per_query']:8.1f}")
    for t, f in result["forgetting"].items():
        print(f"forgetting ({t}, {f['new_images']} new images, {f['steps']} steps): new R@1 {f['before']['new']:.2f} -> {f['after']['new']:.2f}; "
              f"common {f['before']['common']:.2f} -> {f['after']['common']:.2f}; knowledge {f['before']['knowledge']:.2f} -> {f['after']['knowledge']:.2f}")


def cmd_eval_gill(args, s) -> None:
    from .data.world_store import load_world
    from .evaluation.gill_eval import evaluate_gill, findings
    from .zoo import load_gill, load_judge, zoo_status

    world = load_world(s.data_dir, s.world_config())
    gill = load_gill(s)
    result = evaluate_gill(gill, world, load_judge(s), n_prompts=args.n_prompts, n_queries=args.n_queries, seed=s.seed, manifest=zoo_status(s)["models"]["gill"])
    if args.json:
        _print_json(result)
        return
    print("\n".join(findings(result)))


def cmd_eval_bench(args, s) -> None:
    from .data.world_store import load_world
    from .errors import TigerError
    from .evaluation.unified_bench import run_bench
    from .methods.unified import make_backend
    from .zoo import load_gill, load_grace, load_judge, load_text_to_image

    world = load_world(s.data_dir, s.world_config())
    lmm, vq, enc = _tiger_models(s)
    zoo, skipped = {"lmm": lmm, "visual_tokenizer": vq, "dual_encoder": enc, "diffusion": load_text_to_image(s)}, {}
    for name, load in (("gill", lambda: load_gill(s)), (f"grace_{args.grace_type}", lambda: load_grace(s, [args.grace_type])[args.grace_type])):
        try:
            zoo[name] = load()
        except TigerError as e:  # optional rows: the benchmark runs without them and says why
            skipped[name] = str(e)
    backends = {b: make_backend(b, zoo, world.gallery.images, num_beams=args.beams) for b in args.backends if b != "gill" or "gill" in zoo}
    grace = zoo.get(f"grace_{args.grace_type}")
    result = run_bench(backends, world, load_judge(s), enc, lmm, vq, zoo.get("gill"), {f"grace_{args.grace_type}": grace} if grace else {}, n=args.n, seed=s.seed)
    result["skipped"] = skipped
    if args.json:
        _print_json(result)
        return
    from .evaluation.unified_bench import findings

    for r in result["rows"]:
        if r["domain"] == "all":
            print(f"{r['name']:<28} judge {r['judge_accuracy']:.2f}  decision {r['decision_accuracy']:.2f}  retrieved {r['retrieved_share']:.2f}  CLIP-T {r['clip_t']}")
    print("\n".join(findings(result)))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")


def cmd_retrieve(args, s) -> None:
    """Rank the gallery for one prompt; warn when the model knows none of its words."""
    from .data.world_store import load_world
    from .methods import DenseRetriever, TIGeR

    world = load_world(s.data_dir, s.world_config())
    if args.method == "tiger":
        lmm, vq, _ = _tiger_models(s)
        retriever, options = TIGeR.from_images(lmm, vq, world.gallery.images), {"num_beams": args.beams}
    elif args.method == "grace":
        from .zoo import load_grace

        retriever, options = load_grace(s, [args.id_type])[args.id_type], {}
    elif args.method == "gill":
        from .zoo import load_gill

        retriever, options = load_gill(s).retriever(world.gallery.images), {}
    else:
        from .zoo import load_dual_encoder

        retriever, options = DenseRetriever(load_dual_encoder(s), world.gallery.images), {}
    r = retriever.retrieve(args.prompt, k=args.k, **options)
    if r.warning:
        info(r.warning)
    rows = [{"index": i, "score": round(float(v), 4), "caption": world.gallery.captions[i][0]} for i, v in zip(r.indices.tolist(), r.scores.tolist())]
    if args.json:
        _print_json({"prompt": r.prompt, "method": args.method, "score_name": r.score_name, "known_word_share": r.known_word_share,
                     "seconds": round(r.seconds, 4), "ranking": rows})
        return
    print(f"{args.method} ({r.score_name}, {r.seconds:.2f}s, known words {r.known_word_share:.0%}):")
    for row in rows:
        print(f"  #{row['index']:<5} {row['score']:9.3f}  {row['caption']}")


def cmd_bench_retrieval(args, s) -> None:
    from .data.world_store import load_world
    from .evaluation.retrieval_benchmark import run_retrieval_benchmark

    lmm, vq, enc = _tiger_models(s)
    result = run_retrieval_benchmark(lmm, vq, enc, load_world(s.data_dir, s.world_config()), s.cache_dir, sizes=args.sizes, n_queries=args.queries, num_beams=args.beams)
    if args.json:
        _print_json(result)
        return
    for r in result["results"]:
        print(f"n={r['n']:>9,} {r['method']:<10} {r['ms_per_query']:10.2f} ms/query")


def cmd_zoo_build(args, s) -> None:
    from .zoo import build_zoo

    build_zoo(s, only=args.only, force=args.force)


def cmd_zoo_status(args, s) -> None:
    from .zoo import zoo_status

    status = zoo_status(s)
    if args.json:
        _print_json(status)
    else:
        for name, m in status["models"].items():
            state = "built" if m["built"] else "missing"
            metrics = ", ".join(f"{k}={v}" for k, v in m.get("metrics", {}).items())
            print(f"{name:<18} {m['role']:<17} {state:<8} {metrics}")


def cmd_demo(args, s) -> None:
    """The main job on the default profile: build what is missing, then run the tour."""
    import matplotlib

    matplotlib.use("Agg")
    from .demo import answer_prompt, run_demo

    if args.prompt is None:
        run_demo(s)
        return
    out = answer_prompt(s, args.prompt, backend=args.backend, rule=args.rule, quiet=args.json)
    if args.json:
        _print_json(out)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tiger", description="tigerlib: unified text-to-image generation and retrieval, for learning.")
    p.add_argument("--profile", help="mini (default) or full; env TIGER_PROFILE")
    p.add_argument("--seed", type=str, help="global seed (default 0); env TIGER_SEED")
    p.add_argument("--home", help="root for data/checkpoints/caches; env TIGER_HOME")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("info", help="print profile, device and paths").set_defaults(func=cmd_info)
    dm = sub.add_parser("demo", help="build the world and the zoo if missing, then the tour; with a prompt: retrieve, generate and decide for it")
    dm.add_argument("prompt", nargs="?", default=None, help="what to answer (default: the tour, answering one prompt of each kind)")
    dm.add_argument("--backend", choices=["tiger", "gill", "agent"], default="tiger")
    dm.add_argument("--rule", choices=["forward", "reverse", "classifier", "classifier+gallery"], default="reverse",
                    help="the decision: TIGeR's scores, or GILL's classifier (alone or with the gallery check; trained first, in seconds)")
    dm.add_argument("--json", action="store_true", help="print the answer object (with the figure's path)")
    dm.set_defaults(func=cmd_demo)

    world = sub.add_parser("world", help="the mini world").add_subparsers(dest="action", required=True)
    wb = world.add_parser("build", help="build the mini world (idempotent)")
    wb.add_argument("--force", action="store_true", help="rebuild even if an intact copy exists")
    wb.add_argument("--json", action="store_true")
    ws = world.add_parser("show", help="save a grid of images with captions and print the captions")
    ws.add_argument("--split", default="gallery", choices=["train", "val", "gallery", "knowledge", "common", "creative"])
    ws.add_argument("--n", type=int, default=16)
    ws.add_argument("--seed-offset", type=int, default=0, help="pick another random sample")
    ws.add_argument("--out", help="PNG path (default: TIGER_HOME/world_<split>.png)")
    for q in (wb, ws):
        q.add_argument("--image-size", type=int)
        q.add_argument("--n-train", type=int)
        q.add_argument("--n-gallery", type=int)
        q.add_argument("--n-entities", type=int)
    wb.set_defaults(func=cmd_world_build)
    ws.set_defaults(func=cmd_world_show)

    bench = sub.add_parser("bench", help="benchmarks printing JSON").add_subparsers(dest="action", required=True)
    bw = bench.add_parser("world", help="world generation speed (images/s, one core)")
    bw.add_argument("--n", type=int, default=20_000)
    bw.add_argument("--image-size", type=int)
    bw.add_argument("--json", action="store_true")
    bw.set_defaults(func=cmd_bench_world)
    bz = bench.add_parser("zoo", help="seconds per training phase and steps/s of each zoo model, on a few steps")
    bz.add_argument("--steps", type=int, default=20)
    bz.add_argument("--only", nargs="+", choices=[n for n in ("judge", "dual_encoder", "visual_tokenizer", "lmm", "diffusion")])
    bz.add_argument("--no-eval", action="store_true", help="skip timing the in-build evaluations")
    bz.add_argument("--json", action="store_true")
    bz.set_defaults(func=cmd_bench_zoo)
    bt = bench.add_parser("trie", help="tensor trie vs the nested-dict reference")
    bt.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    bt.add_argument("--beams", type=int, default=800)
    bt.add_argument("--json", action="store_true")
    bt.set_defaults(func=cmd_bench_trie)

    br = bench.add_parser("retrieval", help="generative (TIGeR beam search) vs dense retrieval latency, 1K..1M images")
    br.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    br.add_argument("--queries", type=int, default=5, help="prompts timed per size")
    br.add_argument("--beams", type=int, default=100)
    br.add_argument("--json", action="store_true")
    br.set_defaults(func=cmd_bench_retrieval)

    ev = sub.add_parser("eval", help="evaluations printing JSON").add_subparsers(dest="action", required=True)
    et = ev.add_parser("tiger", help="TIGeR on the mini world: proxy study, beam search, re-ranking, dense baseline")
    et.add_argument("--n-queries", type=int, default=50, help="queries per kind (knowledge, common)")
    et.add_argument("--beams", type=int, default=100)
    et.add_argument("--rerank", type=int, default=None, help="candidates re-ranked by log p(X|Y) (default: all the beams reached; 0: none)")
    et.add_argument("--eta", type=float, default=1.0, help="PMI weight of the null prompt")
    et.add_argument("--json", action="store_true")
    et.set_defaults(func=cmd_eval_tiger)

    eg = ev.add_parser("grace", help="GRACE on the mini world: every identifier type, the dense baseline, describe-by-id, forgetting")
    eg.add_argument("--types", nargs="+", choices=["string", "numeric", "semantic", "structured", "atomic"], help="identifier types (default: all five)")
    eg.add_argument("--forgetting-types", type=int, default=2, help="run the forgetting study for this many of the best types (0: none)")
    eg.add_argument("--forgetting-steps", type=int, default=40, help="fine-tuning steps that memorize the new images")
    eg.add_argument("--json", action="store_true")
    eg.set_defaults(func=cmd_eval_grace)

    eh = ev.add_parser("gill", help="GILL on the mini world: mapped vs direct generation (in-world and out-of-world words), the retrieval head vs dense, captioning")
    eh.add_argument("--n-prompts", type=int, default=100, help="prompts per generation set (common, creative; out-of-world: 50..60)")
    eh.add_argument("--n-queries", type=int, default=None, help="retrieval queries per kind (default: all)")
    eh.add_argument("--json", action="store_true")
    eh.set_defaults(func=cmd_eval_gill)

    eb = ev.add_parser("bench", help="mini TIGeR-Bench: retrieve or generate on knowledge, creative and common prompts, with gold labels")
    eb.add_argument("--n", type=int, default=50, help="prompts per domain")
    eb.add_argument("--backends", nargs="+", choices=["tiger", "gill", "agent"], default=["tiger", "gill", "agent"])
    eb.add_argument("--grace-type", choices=["string", "numeric", "semantic", "structured", "atomic"], default="atomic", help="GRACE's retrieval-only row")
    eb.add_argument("--beams", type=int, default=100, help="TIGeR's beams")
    eb.add_argument("--json", action="store_true")
    eb.set_defaults(func=cmd_eval_bench)

    rt = sub.add_parser("retrieve", help="rank the mini gallery for a prompt (dense, TIGeR, GRACE or GILL's retrieval head)")
    rt.add_argument("prompt")
    rt.add_argument("--method", choices=["dense", "tiger", "grace", "gill"], default="dense")
    rt.add_argument("--id-type", choices=["string", "numeric", "semantic", "structured", "atomic"], default="atomic", help="GRACE's identifier type")
    rt.add_argument("--k", type=int, default=5)
    rt.add_argument("--beams", type=int, default=100, help="TIGeR's beams")
    rt.add_argument("--json", action="store_true")
    rt.set_defaults(func=cmd_retrieve)

    zoo = sub.add_parser("zoo", help="the mini model zoo").add_subparsers(dest="action", required=True)
    zb = zoo.add_parser("build", help="train the models that are missing (idempotent, resumable)")
    zb.add_argument("--only", nargs="+", help="model names to build")
    zb.add_argument("--force", action="store_true", help="retrain even if a valid checkpoint exists")
    zb.set_defaults(func=cmd_zoo_build)
    zs = zoo.add_parser("status", help="each model with its quality metrics")
    zs.add_argument("--json", action="store_true")
    zs.set_defaults(func=cmd_zoo_status)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = get_settings(profile=args.profile, seed=args.seed, home=args.home)
        args.func(args, settings)
    except TigerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: what was finished is kept; run the command again to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
