"""The model zoo: build what is missing, load what is built, report quality.

Each model is trained independently (a finished model is never retrained unless asked), written
atomically as ``model.safetensors`` plus ``manifest.json`` (config, seed, world, training time,
quality metrics, sha256 of every file). A corrupted or truncated checkpoint fails its hash check
and is rebuilt, never loaded. At full scale the same roles load pretrained checkpoints by the names
in ``tigerlib/profiles.py``.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch

from .config import Settings, info
from .errors import TigerError
from .evaluation.gill_eval import evaluate_gill_model
from .evaluation.grace_eval import evaluate_grace_model
from .evaluation.zoo_metrics import evaluate_diffusion, evaluate_dual_encoder, evaluate_judge, evaluate_lmm, evaluate_tokenizer
from .models.diffusion import DiffusionConfig, LatentDiffusion, StableDiffusion, train_diffusion
from .models.dual_encoder import DualEncoder, DualEncoderConfig, train_dual_encoder
from .models.judge import AttributeJudge, ClipJudge, JudgeConfig, train_judge
from .models.lmm import LMMConfig, UnifiedLMM, train_lmm
from .models.text_llm import TextLLM, TextLLMConfig, import_text_llm
from .models.visual_tokenizer import JanusTokenizer, VQConfig, VQTokenizer, train_vq
from .methods.gill import GILL, GILLConfig
from .methods.gill import train_for_zoo as train_gill_for_zoo
from .methods.grace import GRACE, GRACE_RECIPES, GRACEConfig
from .methods.grace import TYPES as GRACE_TYPES
from .methods.grace import train_for_zoo as train_grace_for_zoo
from .storage import atomic_dir, atomic_write_json, files_manifest, read_json, verify_files

ZOO_VERSION = 3  # 2: the judge; metrics computed by tigerlib.evaluation. 3: the recipe hash


@dataclass(frozen=True)
class ZooModel:
    name: str
    role: str
    config_class: type
    needs: tuple[str, ...]
    train: Callable  # (world, config, seed, device, deps) -> (model, stats)
    evaluate: Callable  # (model, world, deps) -> metrics
    create: Callable  # (config, device, folder, deps) -> model with .model (an nn.Module), random weights
    files: bool = False  # the model saves more than its weights (model.save_files(folder), e.g. a tokenizer)
    runs_with_needs: bool = False  # loading it loads its dependencies too (the diffusion model decodes with the VQ)
    config_for: Callable | None = None  # (world) -> the default config, where it depends on the world
    sources: tuple[str, ...] = ()  # modules of its training code ("lmm": tigerlib.models.lmm, or a full "tigerlib." name): a change there rebuilds it
    seconds: float = 0.0  # build seconds of the default recipe on the course's 2-core CPU (`tiger bench zoo`): the plan's estimate
    optional: bool = False  # not part of a plain `tiger zoo build` (build it with --only NAME)


# Build seconds (training + evaluation) of each default recipe on the course's 2-core CPU with
# `tiger zoo build`; only the start-of-build plan uses them. Measured on a 2-core Intel Xeon (AVX-512),
# where the whole zoo took 1718 s with the earlier 700-step diffusion recipe (2000 steps: ~615 s).
# The visual tokenizer's bf16 autocast took its training from 309 s to 254 s (0.82x) on a faster day of that machine.
JUDGE_SECONDS, DUAL_ENCODER_SECONDS, VQ_SECONDS, LMM_SECONDS, DIFFUSION_SECONDS, TEXT_LLM_SECONDS = 35.0, 185.0, 390.0, 385.0, 615.0, 16.0
# The first GRACE type built also writes the pseudo-queries all five share (~20 s).
GRACE_SECONDS = {"string": 75.0, "numeric": 60.0, "semantic": 47.0, "structured": 30.0, "atomic": 27.0}
GILL_SECONDS = 340.0

ZOO: dict[str, ZooModel] = {
    "judge": ZooModel(
        "judge",
        "evaluator",
        JudgeConfig,
        (),
        lambda world, cfg, seed, device, deps: train_judge(world, cfg, seed, device),
        lambda model, world, deps: evaluate_judge(model, world),
        lambda cfg, device, folder, deps: AttributeJudge.create(cfg, device),
        config_for=lambda world: JudgeConfig(n_entities=world.config.n_entities),
        sources=("judge", "training"),
        seconds=JUDGE_SECONDS,
    ),
    "dual_encoder": ZooModel(
        "dual_encoder",
        "dual_encoder",
        DualEncoderConfig,
        (),
        lambda world, cfg, seed, device, deps: train_dual_encoder(world, cfg, seed, device),
        lambda model, world, deps: evaluate_dual_encoder(model, world),
        lambda cfg, device, folder, deps: DualEncoder.create(cfg, device, folder),
        files=True,
        sources=("dual_encoder", "vocabulary", "training"),
        seconds=DUAL_ENCODER_SECONDS,
    ),
    "visual_tokenizer": ZooModel(
        "visual_tokenizer",
        "visual_tokenizer",
        VQConfig,
        ("dual_encoder",),
        lambda world, cfg, seed, device, deps: train_vq(world, cfg, seed, device),
        lambda model, world, deps: evaluate_tokenizer(model, deps["dual_encoder"], world),
        lambda cfg, device, folder, deps: VQTokenizer.create(cfg, device),
        sources=("visual_tokenizer", "training"),
        seconds=VQ_SECONDS,
    ),
    "lmm": ZooModel(
        "lmm",
        "lmm",
        LMMConfig,
        ("dual_encoder", "visual_tokenizer", "judge"),
        train_lmm,
        evaluate_lmm,
        lambda cfg, device, folder, deps: UnifiedLMM.create(cfg, device, folder),
        files=True,
        sources=("lmm", "image_token_lm", "text_tokenizer", "vocabulary", "training"),
        seconds=LMM_SECONDS,
    ),
    "diffusion": ZooModel(
        "diffusion",
        "diffusion",
        DiffusionConfig,
        ("dual_encoder", "visual_tokenizer", "judge"),
        train_diffusion,
        evaluate_diffusion,
        lambda cfg, device, folder, deps: LatentDiffusion.for_models(cfg, deps["dual_encoder"], deps["visual_tokenizer"], device),
        runs_with_needs=True,
        sources=("diffusion", "training"),
        seconds=DIFFUSION_SECONDS,
    ),
    "text_llm": ZooModel(
        "text_llm",
        "text_llm",
        TextLLMConfig,
        (),
        import_text_llm,
        lambda model, world, deps: {},
        lambda cfg, device, folder, deps: TextLLM.create(cfg, device, folder),
        files=True,
        sources=("text_llm",),
        seconds=TEXT_LLM_SECONDS,
    ),
}


def _grace_entry(id_type: str) -> ZooModel:
    """GRACE with one identifier type: the zoo's LMM fine-tuned to memorize the gallery."""
    return ZooModel(
        f"grace_{id_type}",
        "grace",
        GRACEConfig,
        ("dual_encoder", "visual_tokenizer", "lmm"),
        train_grace_for_zoo,
        lambda model, world, deps: evaluate_grace_model(model, world),
        lambda cfg, device, folder, deps: GRACE.create(cfg, device, folder),
        files=True,
        config_for=lambda world: GRACE_RECIPES[id_type],
        sources=("tigerlib.methods.grace", "tigerlib.identifiers", "training"),
        seconds=GRACE_SECONDS[id_type],
    )


ZOO.update({f"grace_{t}": _grace_entry(t) for t in GRACE_TYPES})
ZOO["gill"] = ZooModel(
    "gill",
    "gill",
    GILLConfig,
    ("text_llm", "dual_encoder", "diffusion", "judge"),
    train_gill_for_zoo,
    lambda model, world, deps: evaluate_gill_model(model, world, deps),
    lambda cfg, device, folder, deps: GILL.create(cfg, device, folder, deps),
    files=True,
    runs_with_needs=True,  # GILL runs the frozen LLM, the dual encoder and the diffusion model it was trained with
    sources=("tigerlib.methods.gill", "tigerlib.methods.gill_mapper", "training"),
    seconds=GILL_SECONDS,
)


# What each built mini model must reach (checked by the quality tests, tests/quality): the
# measured values of the zoo minus a margin for seeds and machines. A nested metric is "a.b".
FLOORS: dict[str, dict[str, float]] = {
    "judge": {**{f"attribute_accuracy.{k}": 0.98 for k in ("all", "shape", "color", "size", "pos", "bg")}, "entity_accuracy": 0.98},
    "dual_encoder": {"t2i_r1": 0.9, "t2i_r10": 0.98, "entity_r1": 0.95},
    "visual_tokenizer": {"recon_r1": 0.75, "codebook_usage": 0.9},
    # forward_judge.all: 0.05 to 0.07 on Intel builds, 0.025 (5 of 200 scenes) on an AMD EPYC, with the same code; its
    # binomial spread at n=200 is about 0.012, so 0.02 keeps two spreads below Intel and still fails a generator at chance (~0.0002)
    "lmm": {"entity_reverse_r1": 0.9, "clip_t_gap": 0.3, "reverse_top1": 0.7, "forward_judge.all": 0.02},
    "diffusion": {"common_r1": 0.85, "creative_r1": 0.8, "common_judge.all": 0.5, "creative_judge.all": 0.4},
    # GRACE (first 100 queries of each kind, 10 beams): what each identifier type reaches with its recipe (GRACE_RECIPES)
    "grace_atomic": {"knowledge.r1": 0.88, "common.r1": 0.75},
    "grace_semantic": {"knowledge.r1": 0.7, "common.r1": 0.83},
    "grace_string": {"knowledge.r1": 0.7, "common.r10": 0.6},
    "grace_structured": {"knowledge.r10": 0.5, "common.r10": 0.25},  # knowledge.r10 0.55 on an AMD EPYC (k-means over its dual encoder)
    "grace_numeric": {"knowledge.r10": 0.4},
    # GILL (100 held-out common prompts; the first 100 queries of each kind): built 1.06, 1.0, 0.83, 0.81 with standardized
    # states and canonical targets (without them 0.86, 0.96, 0.75, 0.75). The first two floors are issue 15's targets (mapped
    # at least 0.9 of direct); retrieval.common 0.75 is its 0.8x dense (0.93), and float noise in the cached states moved it
    # to 0.71 once (GILLConfig's comments). Captions of 100 validation scenes naming
    # shape and colour: 0.38 built (0.15 to 0.43 over seeds of the image-input stage; 0.0 with the earlier 20 steps)
    "gill": {"common_judge_ratio": 0.9, "common_clip_t_ratio": 0.9, "retrieval.common": 0.75, "retrieval.knowledge": 0.6, "caption_shape_and_color": 0.1},
}


def below_floors(status: dict) -> list[str]:
    """Every "model metric=value < floor" of a zoo status (empty: all floors hold). An optional
    model's floors count when it is built."""
    out = []
    for name, floors in FLOORS.items():
        if ZOO[name].optional and not status["models"].get(name, {}).get("built"):
            continue
        metrics = status["models"].get(name, {}).get("metrics", {})
        for path, floor in floors.items():
            value = metrics
            for key in path.split("."):
                value = value.get(key) if isinstance(value, dict) else None
            if not isinstance(value, (int, float)) or value < floor:
                out.append(f"{name} {path}={value} < {floor}")
    return out


def model_dir(settings: Settings, name: str) -> Path:
    return settings.checkpoint_dir / name


def check_checkpoint(path: Path) -> tuple[dict | None, str | None]:
    """(manifest, None) if the checkpoint is complete and intact, else (None, why not)."""
    manifest = read_json(path / "manifest.json")
    if manifest is None:
        return None, "not built" if not path.exists() else "no readable manifest (interrupted build?)"
    if manifest.get("zoo_version") != ZOO_VERSION:
        return None, f"built by zoo version {manifest.get('zoo_version')}, this library has {ZOO_VERSION}"
    problem = verify_files(path, manifest.get("files", {}))
    if problem or "model.safetensors" not in manifest.get("files", {}):
        return None, f"checkpoint damaged: {problem or 'weights missing'}"
    return manifest, None


def _config_from(cls, data: dict):
    names = {f.name for f in fields(cls)}
    data = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
    return cls(**data)


def load_zoo_model(settings: Settings, name: str):
    """Load a built mini model (hash-checked); a missing or damaged one names the command to fix it."""
    from safetensors.torch import load_file

    entry = _entry(name)
    path = model_dir(settings, name)
    manifest, problem = check_checkpoint(path)
    if problem is None and manifest.get("recipe_hash") != recipe_hash(entry):
        problem = "stale: its training code changed since it was built"
    if problem is None and manifest.get("needs", {}) != _dependency_hashes(settings, entry):
        problem = f"stale: trained against other versions of {', '.join(entry.needs)}"
    if problem:
        raise TigerError(f"zoo model {name!r} is unusable ({problem}): run `{build_command(entry)}`")
    config = _config_from(entry.config_class, manifest["config"])
    deps = {d: load_zoo_model(settings, d) for d in entry.needs} if entry.runs_with_needs else {}
    model = entry.create(config, settings.device, path, deps)
    model.model.load_state_dict(load_file(path / "model.safetensors"))
    model.model.eval()
    return model


def build_command(entry: ZooModel) -> str:
    """The command that builds a model (an optional one is named)."""
    return f"tiger zoo build --only {entry.name}" if entry.optional else "tiger zoo build"


def _entry(name: str) -> ZooModel:
    if name not in ZOO:
        raise TigerError(f"unknown zoo model {name!r}: use one of {list(ZOO)}")
    return ZOO[name]


def with_needs(names) -> list[str]:
    """``names`` and everything they need, transitively, in build order (ZOO lists each model after its needs)."""
    out, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name not in out:
            out.add(name)
            todo += ZOO[name].needs
    return [n for n in ZOO if n in out]


def build_zoo(settings: Settings, only: list[str] | None = None, force: bool = False, configs: dict[str, Any] | None = None, world=None) -> dict:
    """Train every missing or stale model (or those in ``only``, with their dependencies), evaluate
    it and save it. Returns the status object. ``configs`` overrides a model's config (tests use
    tiny ones). Prints the plan with a time estimate first and a table of seconds per model last.
    An interrupted build keeps every finished model and resumes at the one it was on."""
    from .data.world_store import build_world

    wanted = [n for n in ZOO if not ZOO[n].optional] if not only else [_entry(n).name for n in only]
    skipped = [n for n in ZOO if n not in wanted and ZOO[n].optional]
    if skipped and not only:
        info("zoo: optional, not built by default: " + ", ".join(f"{n} ({build_command(ZOO[n])}, ~{ZOO[n].seconds / 60:.1f} min)" for n in skipped))
    order = with_needs(wanted)
    world = world or build_world(settings.data_dir, settings.world_config())
    configs = configs or {}
    plan = []
    for name in order:
        entry = ZOO[name]
        config = configs.get(name) or (entry.config_for(world) if entry.config_for else entry.config_class())
        problem = _stale(settings, entry, config, world, force and name in wanted, planned=[n for n, _, _ in plan])
        if problem is None:
            info(f"{name}: already built ({model_dir(settings, name)}): nothing to do")
        else:
            plan.append((name, config, problem))
    if plan:
        estimate = sum(_estimate(ZOO[n], c) for n, c, _ in plan)
        info(f"zoo: {len(plan)} model(s) to train, about {estimate / 60:.0f} min on a 2-core CPU: " + ", ".join(f"{n} (~{_estimate(ZOO[n], c):.0f}s)" for n, c, _ in plan))
    loaded: dict[str, Any] = {}
    built = []
    for name, config, problem in plan:
        entry = ZOO[name]
        if problem != "not built":
            info(f"{name}: {problem}: rebuilding")
        _remove_partials(model_dir(settings, name))  # left by a killed build
        for d in entry.needs:  # one object per dependency, so caches on it (the VQ's codes) are shared
            loaded[d] = loaded.get(d) or load_zoo_model(settings, d)
        deps = {d: loaded[d] for d in entry.needs}
        info(f"{name}: training ({entry.config_class.__name__}) ...")
        t0 = time.perf_counter()
        torch.manual_seed(settings.seed)
        model, stats = entry.train(world, config, settings.seed, settings.device, deps)
        t1 = time.perf_counter()
        metrics = entry.evaluate(model, world, deps)
        _save(settings, entry, model, config, world, stats, metrics, time.perf_counter() - t0)
        loaded[name] = model
        built.append((name, t1 - t0, time.perf_counter() - t1))
        info(f"{name}: built in {time.perf_counter() - t0:.0f}s ({stats['train_seconds']:.0f}s of training); {metrics}")
    if built:
        rows = [f"  {n:17s} {tr:7.0f} {ev:7.0f} {tr + ev:7.0f}" for n, tr, ev in built]
        total = sum(tr + ev for _, tr, ev in built)
        info("\n".join(["zoo: seconds per model", f"  {'model':17s} {'train':>7s} {'eval':>7s} {'total':>7s}", *rows, f"  {'all':17s} {'':7s} {'':7s} {total:7.0f}"]))
    return zoo_status(settings)


def _stale(settings: Settings, entry: ZooModel, config, world, force: bool, planned: list[str]) -> str | None:
    """Why the model must be (re)built, or None when its checkpoint is current."""
    manifest, problem = check_checkpoint(model_dir(settings, entry.name))
    if force:
        return "rebuild asked for"
    if manifest is None:
        return problem
    if manifest.get("world_id") != world.id:
        return f"trained on world {manifest.get('world_id')}, not {world.id}"
    if json.loads(json.dumps(asdict(config))) != manifest.get("config"):
        return "built with another config (the library's recipe changed)"
    if manifest.get("recipe_hash") != recipe_hash(entry):
        return "its training code changed since it was built"
    if any(d in planned for d in entry.needs) or manifest.get("needs", {}) != _dependency_hashes(settings, entry):
        return f"trained against other versions of {', '.join(entry.needs)}"
    return None


def _estimate(entry: ZooModel, config) -> float:
    """The plan's seconds for a model: its measured default build, scaled by the recipe's steps."""
    default = entry.config_class()
    steps, base = getattr(config, "steps", None), getattr(default, "steps", None)
    return entry.seconds * (steps / base if steps and base else 1.0)


def _remove_partials(path: Path) -> None:
    import shutil

    for p in path.parent.glob(f".{path.name}.*.partial"):
        shutil.rmtree(p, ignore_errors=True)


def recipe_hash(entry: ZooModel) -> str:
    """sha256 over the source of the model's training code (its ``sources`` modules): editing a
    training loop makes the built model stale, as a config change does."""
    import hashlib
    import importlib

    digest = hashlib.sha256()
    for module in sorted(set(entry.sources)):
        digest.update(module.encode())
        name = module if module.startswith("tigerlib.") else f"tigerlib.models.{module}"
        digest.update(Path(importlib.import_module(name).__file__).read_bytes())
    return digest.hexdigest()


def _dependency_hashes(settings: Settings, entry: ZooModel) -> dict[str, str | None]:
    """The weights hash of each model this one was trained or evaluated with: when one of them
    changes (for example the visual tokenizer the LMM's image tokens come from), this one is stale."""
    hashes = {}
    for dep in entry.needs:
        manifest = read_json(model_dir(settings, dep) / "manifest.json") or {}
        hashes[dep] = manifest.get("files", {}).get("model.safetensors", {}).get("sha256")
    return hashes


def _save(settings, entry: ZooModel, model, config, world, stats: dict, metrics: dict, wall: float) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().clone().contiguous() for k, v in model.model.state_dict().items()}  # clone: tied weights
    with atomic_dir(model_dir(settings, entry.name)) as tmp:
        save_file(state, str(tmp / "model.safetensors"))
        if entry.files:
            model.save_files(tmp)
        atomic_write_json(
            tmp / "manifest.json",
            {
                "zoo_version": ZOO_VERSION,
                "name": entry.name,
                "role": entry.role,
                "class": f"{type(model.model).__module__}.{type(model.model).__name__}",
                "config": asdict(config),
                "seed": settings.seed,
                "world_id": world.id,
                "needs": _dependency_hashes(settings, entry),
                "recipe_hash": recipe_hash(entry),
                "train_seconds": stats["train_seconds"],
                "build_seconds": round(wall, 1),
                "training": stats,
                "metrics": metrics,
                "parameters": sum(v.numel() for v in state.values()),
                "torch_threads": torch.get_num_threads(),
                "files": files_manifest(tmp),
            },
        )


def zoo_status(settings: Settings) -> dict:
    models = {}
    for name, entry in ZOO.items():
        manifest, problem = check_checkpoint(model_dir(settings, name))
        rec = {"role": entry.role, "built": manifest is not None, "optional": entry.optional, "train_seconds": None, "metrics": {}}
        if manifest:
            rec.update(train_seconds=manifest["train_seconds"], metrics=manifest["metrics"], parameters=manifest.get("parameters"), world_id=manifest.get("world_id"),
                       config=manifest.get("config", {}))
            if "source" in manifest.get("training", {}):
                rec["source"] = manifest["training"]["source"]
        else:
            rec["problem"] = problem
        models[name] = rec
    return {"profile": settings.profile.name, "models": models}


# -- one loader per role, both scales -------------------------------------------------------------


def load_role(settings: Settings, role: str, from_pretrained: Callable):
    """The profile's model for ``role``: a zoo model (``zoo:<name>``) or ``from_pretrained(name, device)``."""
    spec = settings.profile.checkpoints[role]
    if spec.startswith("zoo:"):
        return load_zoo_model(settings, spec[4:])
    return from_pretrained(spec, settings.device)


def load_dual_encoder(settings: Settings) -> DualEncoder:
    """The methods' dual encoder (dense baseline, CLIP-T at mini scale): open_clip ViT-L-14 at full scale."""
    return load_role(settings, "dual_encoder", DualEncoder.from_pretrained)


def load_judge(settings: Settings):
    """The evaluator no method uses. Mini: the zoo's attribute classifier; full: open_clip
    ViT-H-14 (laion2b) reading the same attributes zero-shot (:class:`ClipJudge`)."""
    return load_role(settings, "evaluator", ClipJudge.from_pretrained)


def load_visual_tokenizer(settings: Settings):
    return load_role(settings, "visual_tokenizer", JanusTokenizer.from_pretrained)


def load_text_to_image(settings: Settings):
    """Mini: the zoo's latent diffusion model (with its text encoder and decoder); full: Stable Diffusion."""
    return load_role(settings, "text_to_image", StableDiffusion.from_pretrained)


def load_text_llm(settings: Settings) -> TextLLM:
    """Mini: SmolLM2-135M-Instruct as saved in the zoo; full: any causal LM by name (OPT-6.7B)."""
    return load_role(settings, "text_llm", TextLLM.from_pretrained)


def load_grace(settings: Settings, types: list[str] | None = None) -> dict[str, GRACE]:
    """The zoo's GRACE models by identifier type (default: all five). Mini scale only: GRACE
    fine-tunes the LMM on the gallery, so there is no pretrained checkpoint to name."""
    from .methods.grace import check_type

    return {t: load_zoo_model(settings, f"grace_{check_type(t)}") for t in (types or GRACE_TYPES)}


def load_gill(settings: Settings) -> GILL:
    """The zoo's GILL model (mapper, [IMG] embeddings, heads) on the frozen text LLM, the dual
    encoder and the diffusion model it was trained with. Mini scale only: at full scale GILL's
    released weights need OPT-6.7B and Stable Diffusion v1.5, which this library does not fetch."""
    return load_zoo_model(settings, "gill")


def load_lmm(settings: Settings):
    """Mini: the zoo's unified LMM. Full: a transformers unified LMM by name (Janus-Pro)."""
    from .models.janus_lmm import JanusLMM

    return load_role(settings, "lmm", JanusLMM.from_pretrained)


# -- benchmark ------------------------------------------------------------------------------------


def bench_zoo(settings: Settings, steps: int = 20, only: list[str] | None = None, evaluate: bool = True, world=None) -> dict:
    """Seconds per training phase (data, forward, backward, optimizer) and steps per second of
    every trained zoo model over ``steps`` steps of its default recipe, its in-build evaluation's
    seconds, and the full build's estimate (the measured step rate times the recipe's steps).
    Dependencies come from the built zoo where they are built, otherwise from these short runs."""
    from dataclasses import replace

    from .data.world_store import build_world

    if steps < 1:
        raise TigerError(f"need steps >= 1, got {steps}")
    world = world or build_world(settings.data_dir, settings.world_config())
    names = [n for n in ZOO if n != "text_llm" and (n in only if only else not ZOO[n].optional)]
    made: dict[str, Any] = {}
    out: dict[str, Any] = {"steps": steps, "threads": torch.get_num_threads(), "models": {}}
    for name in with_needs(names):
        entry = ZOO[name]
        deps = {d: made[d] for d in entry.needs}
        if name not in names:
            try:
                made[name] = load_zoo_model(settings, name)
                continue
            except TigerError:  # not built or stale: a short run stands in
                pass
        full = entry.config_for(world) if entry.config_for else entry.config_class()
        config = full.for_bench(steps) if hasattr(full, "for_bench") else replace(full, steps=steps, **({"warmup": 1} if hasattr(full, "warmup") else {}))
        torch.manual_seed(settings.seed)
        t0 = time.perf_counter()
        model, stats = entry.train(world, config, settings.seed, settings.device, deps)
        train_s = time.perf_counter() - t0
        made[name] = model
        if name not in names:
            continue
        phases = stats.get("phases", {})
        loop = sum(v for k, v in phases.items() if k != "encode")
        rec = {"steps": steps, "seconds": round(train_s, 2), "phases": phases, "steps_per_second": round(steps / max(loop, 1e-9), 3),
               "recipe_steps": getattr(full, "steps", None), "batch_size": getattr(full, "batch_size", None)}
        if evaluate:
            t0 = time.perf_counter()
            entry.evaluate(model, world, deps)
            rec["evaluation_seconds"] = round(time.perf_counter() - t0, 2)
        full_loop = full.estimate_seconds(phases, config) if hasattr(full, "estimate_seconds") else loop / steps * full.steps  # GILL: stages of other sizes
        rec["estimated_build_seconds"] = round(train_s - loop + full_loop + rec.get("evaluation_seconds", 0.0), 1)
        out["models"][name] = rec
        info(f"bench {name}: {rec}")
    out["estimated_zoo_seconds"] = round(sum(r["estimated_build_seconds"] for r in out["models"].values()), 1)
    return out
