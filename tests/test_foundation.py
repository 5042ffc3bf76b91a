"""The foundation every method builds on: layers, one recall, one hit definition, one retrieval
interface, the judge, unknown prompts, and the world's training splits."""
import ast
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import tigerlib
from tigerlib.data import world as W
from tigerlib.errors import TigerError

PACKAGE = Path(tigerlib.__file__).parent
UNKNOWN = ["", "   ", "红色的圆", "🔴🟥", "\x00\x07\x1b", "\t\n"]


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            else:
                out.add(node.module)
    return out


def test_layers_run_one_way():
    """data -> models -> decoding -> methods -> evaluation -> zoo/notebooks/CLI."""
    below = {
        "data": ("tigerlib.models", "tigerlib.decoding", "tigerlib.methods", "tigerlib.evaluation", "tigerlib.zoo"),
        "models": ("tigerlib.decoding", "tigerlib.methods", "tigerlib.evaluation", "tigerlib.zoo"),
        "decoding": ("tigerlib.methods", "tigerlib.evaluation", "tigerlib.zoo"),
        "methods": ("tigerlib.evaluation", "tigerlib.zoo"),
        "evaluation": ("tigerlib.zoo",),
    }
    bad = []
    for layer, forbidden in below.items():
        for path in (PACKAGE / layer).rglob("*.py"):
            bad += [f"{path.relative_to(PACKAGE)} imports {m}" for m in _imports(path) if m and m.startswith(forbidden)]
    assert not bad, bad


def _functions(pattern: str):
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and re.fullmatch(pattern, node.name):
                yield path.relative_to(PACKAGE).as_posix(), node.name, ast.unparse(node)


def test_one_recall_and_one_hit_definition():
    """recall@k is computed in one function; every other recall or R@1 helper calls it. Which
    gallery images answer a query is defined once, in the data layer."""
    recalls = list(_functions(r"\w*(recall|_r1|r1_)\w*|r1"))
    assert [(p, n) for p, n, _ in recalls if n == "recall_at_k"] == [("evaluation/retrieval.py", "recall_at_k")]
    assert all("recall_at_k(" in body for p, n, body in recalls if n != "recall_at_k"), [(p, n) for p, n, b in recalls if "recall_at_k(" not in b]
    definitions = [(p, n) for p, n, body in _functions(r"\w*hit\w*") if "np.unique" in body or "==" in body]
    assert definitions == [("data/world_store.py", "hit_sets")], definitions


def test_recall_reads_scores_rankings_and_padded_indices():
    from tigerlib.evaluation import recall_at_k

    scores = torch.tensor([[0.1, 0.9, 0.3], [0.8, 0.1, 0.2]])
    hits = [np.array([2]), np.array([0])]
    assert recall_at_k(scores, hits, ks=(1, 2)) == {1: 0.5, 2: 1.0}
    assert recall_at_k(np.array([[1, 2], [0, -1]]), hits, ks=(1, 2)) == {1: 0.5, 2: 1.0}
    assert recall_at_k([torch.tensor([1, 2]), torch.tensor([], dtype=torch.long)], hits, ks=(2,)) == {2: 0.5}
    assert recall_at_k(scores, [np.array([], dtype=np.int64), np.array([0])], ks=(3,)) == {3: 0.5}  # no hit: never found
    with pytest.raises(ValueError, match="one hit list per query"):
        recall_at_k(scores, hits[:1])


def test_hit_sets_match_the_world(tiny_world):
    from tigerlib.evaluation import hit_sets

    q = tiny_world.queries
    again = hit_sets(tiny_world.gallery.attributes, q.attributes)
    assert all(np.array_equal(a, b) for a, b in zip(again, q.hits))
    for i in np.flatnonzero(q.kind == "common"):
        assert q.gallery_index[i] in q.hits[i]
    assert all(len(h) == 0 for h in np.array(q.hits, dtype=object)[q.kind == "creative"])


def test_package_exports_main_classes():
    from tigerlib import DenseRetriever, TIGeR, build_world  # noqa: F401
    from tigerlib.methods import Ranking, Retriever
    from tigerlib.methods import TIGeR as T

    assert issubclass(T, Retriever) and issubclass(DenseRetriever, Retriever) and T is TIGeR
    assert "score_name" in Ranking.__dataclass_fields__


@pytest.fixture(scope="module")
def dense(tiny_world):
    from tigerlib.methods import DenseRetriever
    from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, train_dual_encoder

    enc, _ = train_dual_encoder(tiny_world, TINY_DUAL_ENCODER, seed=0)
    return DenseRetriever(enc, tiny_world.gallery.images)


def test_dense_interface(dense, tiny_world):
    prompt = tiny_world.queries.texts[0]
    one = dense.retrieve(prompt, k=3)
    assert one.prompt == prompt and one.indices.shape == (3,) and one.score_name == "cosine" and one.seconds > 0
    batch = dense.retrieve([prompt, "a red circle"], k=3)
    assert len(batch) == 2 and torch.equal(batch[0].indices, one.indices)
    assert len(dense.retrieve(prompt).indices) == len(tiny_world.gallery)  # k=None: the whole ranking
    idx, scores = dense.top_k([prompt], k=4)
    assert idx.shape == (1, 4) and (np.diff(scores[0]) <= 1e-6).all()
    assert dense.scores(prompt).shape == (len(tiny_world.gallery),)
    assert dense.top_k(prompt, k=1000)[0].shape == (1000,)  # more than the gallery: padded with -1
    with pytest.raises(TigerError, match="string or a list"):
        dense.retrieve(42)


def test_dense_trains_without_creative_pairs(tiny_world, monkeypatch):
    from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, train_dual_encoder

    asked = []
    real = type(tiny_world.generator).sample
    monkeypatch.setattr(type(tiny_world.generator), "sample", lambda self, *a, **kw: asked.append(kw.get("creative")) or real(self, *a, **kw))
    enc, _ = train_dual_encoder(tiny_world, TINY_DUAL_ENCODER, seed=0)
    assert asked and set(asked) == {"exclude"}
    assert "circle" in enc.vocabulary and "zorvania" not in enc.vocabulary


@pytest.mark.parametrize("prompt", UNKNOWN)
def test_unknown_prompts_are_flagged_by_dense(dense, prompt):
    r = dense.retrieve(prompt, k=2)
    assert r.known_word_share == 0.0 and r.warning and "knows none of the words" in r.warning
    assert len(r.indices) == 2  # still a defined answer
    assert dense.retrieve("a red circle", k=1).known_word_share == 1.0


@pytest.mark.parametrize("prompt", UNKNOWN)
def test_unknown_prompts_are_flagged_by_tiger(lmm, vq, tiny_world, prompt):
    from tigerlib.methods import TIGeR

    t = TIGeR.from_images(lmm, vq, tiny_world.gallery.images[:6])
    r = t.retrieve(prompt, num_beams=2, rerank=1)
    assert r.known_word_share == 0.0 and r.warning
    assert t.retrieve("a red circle", num_beams=2, rerank=0).known_word_share == 1.0


def test_unknown_prompts_are_flagged_by_diffusion(tiny_world, vq):
    from tigerlib.models.diffusion import TINY_DIFFUSION, LatentDiffusion
    from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder

    enc = DualEncoder.create(TINY_DUAL_ENCODER)
    enc.vocabulary = {"a", "red", "circle"}
    t2i = LatentDiffusion.for_models(TINY_DIFFUSION, enc, vq)
    out = t2i(prompt=UNKNOWN + ["a red circle"], num_inference_steps=1, progress=False)
    assert out.known_word_share == [0.0] * len(UNKNOWN) + [1.0]
    assert len(out.warnings) == len(UNKNOWN) and len(out.images) == len(UNKNOWN) + 1


def test_known_word_share_rules():
    from tigerlib.models.vocabulary import known_word_share, words

    assert words("Please, a RED circle!") == ["please", "a", "red", "circle"]
    assert known_word_share("a red blorp", {"a", "red"}) == round(2 / 3, 4)
    assert known_word_share("红色的圆", None) == 1.0 and known_word_share("🔴", None) == 0.0


def test_entity_photos_never_equal_the_gallery_image(tiny_world):
    """No training photo equals its entity's canonical gallery image, even up to brightness."""
    train, gallery = tiny_world.train, tiny_world.gallery
    for e in range(tiny_world.config.n_entities):
        canon = gallery.load(np.flatnonzero(gallery.attributes["entity"] == e))[0].astype(np.float32)
        for photo in train.load(np.flatnonzero(train.attributes["entity"] == e)).astype(np.float32):
            ratio = (photo.sum() + 1) / (canon.sum() + 1)
            assert np.abs(photo - np.clip(canon * ratio, 0, 255)).max() > 30


def test_method_training_data_has_no_creative_pairs(tiny_world):
    held = W.creative_pairs(tiny_world.config.seed, tiny_world.config.n_creative_pairs)
    for split in (tiny_world.train, tiny_world.val, tiny_world.gallery):
        a = split.attributes
        for s, c in held:
            assert not ((a["shape"] == s) & (a["color"] == c)).any()


def test_judge_trains_reads_and_scores(tiny_world):
    from tigerlib.evaluation import attribute_accuracy
    from tigerlib.evaluation.zoo_metrics import evaluate_judge
    from tigerlib.models.judge import TINY_JUDGE, train_judge

    judge, stats = train_judge(tiny_world, TINY_JUDGE, seed=0)
    data = tiny_world.generator.sample(20, seed=5)
    pred = judge.read(data.images)
    assert set(pred) == {"kind", "entity", *W.ATTRIBUTES} and all(len(v) == 20 for v in pred.values())
    perfect = attribute_accuracy(data.attributes, data.attributes)
    assert perfect["all"] == 1.0 and perfect["entity"] == 1.0
    wrong = {**data.attributes, "shape": (data.attributes["shape"] + 1) % len(W.SHAPES)}
    assert attribute_accuracy(wrong, data.attributes)["all"] == 0.0 and attribute_accuracy(wrong, data.attributes)["color"] == 1.0
    m = evaluate_judge(judge, tiny_world, n=40)
    assert set(m["attribute_accuracy"]) == {"all", *W.ATTRIBUTES} and m["entity_accuracy"] is not None
    with pytest.raises(TigerError, match="n_entities"):
        train_judge(tiny_world, type(TINY_JUDGE)(n_entities=3, steps=1), seed=0)


def test_full_judge_reads_zero_shot():
    from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder
    from tigerlib.models.judge import ClipJudge

    judge = ClipJudge(DualEncoder.create(TINY_DUAL_ENCODER))
    pred = judge.read(np.zeros((3, 32, 32, 3), np.uint8))
    assert all(len(v) == 3 for v in pred.values()) and (pred["shape"] < len(W.SHAPES)).all()


def test_full_profile_loads_its_own_judge(monkeypatch, tmp_path):
    """At full scale the evaluator is open_clip ViT-H-14 (laion2b), not the methods' dual encoder."""
    from tigerlib import zoo
    from tigerlib.config import get_settings
    from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder
    from tigerlib.models.judge import ClipJudge

    asked = []
    monkeypatch.setattr(DualEncoder, "from_pretrained", classmethod(lambda cls, spec, device="cpu": asked.append(spec) or DualEncoder.create(TINY_DUAL_ENCODER)))
    judge = zoo.load_judge(get_settings(profile="full", home=tmp_path, device="cpu"))
    assert isinstance(judge, ClipJudge) and asked == ["ViT-H-14/laion2b_s32b_b79k"]
    assert get_settings(profile="mini", home=tmp_path, device="cpu").profile.checkpoints["evaluator"] == "zoo:judge"


def test_cli_retrieve_without_a_world_names_the_fix(home):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "tigerlib", "retrieve", "a red circle", "--json"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == "" and "tiger world build" in r.stderr.strip().splitlines()[-1]
