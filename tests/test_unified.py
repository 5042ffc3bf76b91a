"""The unified system (retrieve or generate) on tiny models: the rules on hand-made scores, the
answer's shape for each backend, the classifier, and every bad input the issue names."""
import re

import numpy as np
import pytest
import torch

from tigerlib.errors import TigerError
from tigerlib.methods.unified import (
    BACKENDS, RULES, Answer, Backend, Candidate, ClassifierGalleryRule, ClassifierRule, LikelihoodRule, agent_backend, answer, fit_gallery_check,
    make_backend, retrieval_wins, make_rule, tiger_backend, train_decision_classifier,
)
from tigerlib.models.diffusion import TINY_DIFFUSION, LatentDiffusion
from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder


class FixedRule:
    """A rule with hand-made scores (retrieved, generated)."""

    name, score_name = "fixed", "hand-made"

    def __init__(self, retrieved: float, generated: float):
        self.values = [retrieved, generated]

    def known_word_shares(self, prompts):
        return [1.0] * len(prompts)

    def scores(self, prompts, retrieved, generated):
        return np.tile(np.asarray(self.values, dtype=np.float64), (len(prompts), 1))


@pytest.fixture(scope="module")
def tiger(lmm, vq, tiny_world):
    return tiger_backend(lmm, vq, tiny_world.gallery.images, num_beams=4)


@pytest.fixture(scope="module")
def toy(tiny_world):
    """A fast backend: dense retrieval with a random tiny encoder; "generation" copies a gallery image."""
    from tigerlib.methods import DenseRetriever

    torch.manual_seed(0)
    images = tiny_world.gallery.images
    return Backend("toy", DenseRetriever(DualEncoder.create(TINY_DUAL_ENCODER), images), images, lambda p, seed: (images[seed % len(images)], None))


@pytest.fixture(scope="module")
def agent(tiny_world, vq):
    torch.manual_seed(0)
    de = DualEncoder.create(TINY_DUAL_ENCODER)
    return agent_backend(de, LatentDiffusion.for_models(TINY_DIFFUSION, de, vq), tiny_world.gallery.images)


def test_the_higher_score_wins_and_a_tie_goes_to_retrieval():
    wins = retrieval_wins(np.array([[-3.0, -5.0], [-5.0, -3.0], [1.0, 1.0], [0.2, 0.8]]))
    assert wins.tolist() == [True, False, True, False]


@pytest.mark.parametrize("values, decision", [((2.0, 1.0), "retrieve"), ((1.0, 2.0), "generate")])
def test_answer_follows_the_rule(toy, tiny_world, values, decision):
    a = answer(tiny_world.queries.texts[0], toy, FixedRule(*values))
    assert a.decision == decision and a.scores == {"retrieved": values[0], "generated": values[1]}
    assert a.chosen is (a.retrieved if decision == "retrieve" else a.generated)


def test_the_likelihood_rules_equal_the_lmms_own_scores(lmm, vq, tiger, tiny_world):
    prompt = tiny_world.queries.texts[1]
    a = answer(prompt, tiger, LikelihoodRule(lmm, vq, "reverse"))
    codes = torch.stack([a.retrieved.codes, a.generated.codes])
    assert torch.equal(a.retrieved.codes, tiger.retriever.codes[a.retrieved.index])
    assert np.allclose([a.scores["retrieved"], a.scores["generated"]], lmm.logp_text_given_image(codes, [prompt] * 2).numpy(), atol=1e-4)
    f = answer(prompt, tiger, LikelihoodRule(lmm, vq, "forward", eta=1.0))
    want = lmm.logp_image_given_text([prompt] * 2, codes) - lmm.logp_image_null(codes)
    assert np.allclose([f.scores["retrieved"], f.scores["generated"]], want.numpy(), atol=1e-4)
    assert f.decision == ("retrieve" if f.scores["retrieved"] >= f.scores["generated"] else "generate")


def test_an_image_without_tokens_is_tokenized_for_the_likelihood_rules(lmm, vq, agent, tiny_world):
    prompt = tiny_world.queries.texts[2]
    a = answer(prompt, agent, LikelihoodRule(lmm, vq, "reverse"))
    assert a.retrieved.codes is None and a.generated.codes is None  # the agent's tools make no tokens
    codes = vq.encode(np.stack([a.retrieved.image, a.generated.image]))
    assert np.allclose([a.scores["retrieved"], a.scores["generated"]], lmm.logp_text_given_image(codes, [prompt] * 2).numpy(), atol=1e-4)


def test_the_answer_has_the_issues_shape_for_each_backend(tiger, agent, lmm, vq, tiny_world):
    size = tiny_world.config.image_size
    for backend in (tiger, agent):
        a = answer(tiny_world.queries.texts[0], backend, LikelihoodRule(lmm, vq, "reverse"))
        assert isinstance(a, Answer) and a.decision in ("retrieve", "generate")
        assert a.retrieved.image.shape == a.generated.image.shape == (size, size, 3) and a.retrieved.image.dtype == np.uint8
        assert 0 <= a.retrieved.index < len(tiny_world.gallery)
        assert np.array_equal(a.retrieved.image, tiny_world.gallery.images[a.retrieved.index])
        assert set(a.seconds) == {"retrieve", "generate", "decide", "total"} and a.seconds["total"] > 0
        out = a.to_json()
        assert set(out) >= {"prompt", "backend", "rule", "retrieved", "generated", "scores", "decision", "seconds", "notes"}


def test_the_same_seed_generates_the_same_image(tiger, tiny_world):
    p = tiny_world.queries.texts[0]
    one, two, other = (tiger.generate(p, seed=s).image for s in (3, 3, 4))
    assert np.array_equal(one, two) and not np.array_equal(one, other)


class FakeGILL:
    """[IMG0] states that carry the label in one direction (a stand-in for GILL's LLM)."""

    def img_states(self, prompts):
        g = torch.Generator().manual_seed(0)
        noise = torch.randn(len(prompts), 3, 8, generator=g)
        noise[:, 0, 0] += torch.tensor([3.0 if p.startswith("the flag") else -3.0 for p in prompts])
        return noise


def test_the_classifier_learns_gold_labels_and_scores_one_prompt():
    prompts = [f"the flag of entity {i}" for i in range(20)] + [f"a new shape {i}" for i in range(20)]
    labels = ["retrieve"] * 20 + ["generate"] * 20
    clf, stats = train_decision_classifier(FakeGILL(), prompts, labels)
    assert stats["train_accuracy"] == 1.0 and stats["n"] == 40
    rule = ClassifierRule(FakeGILL(), clf)
    p = rule.p_retrieve(prompts)
    assert (p[:20] > 0.5).all() and (p[20:] < 0.5).all()
    (r, g), = rule.scores(prompts[:1])
    assert abs(r + g - 1) < 1e-6 and r > g


def test_classifier_labels_are_checked():
    with pytest.raises(TigerError, match="one label per prompt"):
        train_decision_classifier(FakeGILL(), ["a", "b"], ["retrieve", "maybe"])
    with pytest.raises(TigerError, match="both labels"):
        train_decision_classifier(FakeGILL(), ["a", "b", "c"], ["retrieve", "retrieve", "either"])


class FakeEncoder:
    """Gallery images embed to the unit axes; a prompt "scene k" sits at cosine 0.9 to image k,
    "level x" (x > 0.71) at cosine x to image 0, any other prompt at cosine 0.5 to every image."""

    def encode_images(self, images, batch_size=512):
        return torch.eye(4)[: len(images)]

    def known_word_share(self, prompts):
        return [0.0 if p.startswith("红") else 1.0 for p in prompts]

    def encode_text(self, prompts):
        rows = []
        for p in prompts:
            if p.startswith("level"):  # best cosine x, with image 0
                x = float(p.split()[1])
                v = torch.tensor([x, (1 - x * x) ** 0.5, 0.0, 0.0])
            elif "scene" in p:
                v = torch.full((4,), 0.1)
                v[int(p.split()[-1])] = 0.9
            else:
                v = torch.full((4,), 0.5)
            rows.append(v / v.norm())
        return torch.stack(rows)


def test_the_gallery_check_learns_its_threshold_and_lifts_held_scenes_to_retrieval():
    gallery = np.zeros((4, 2, 2, 3), np.uint8)
    prompts = [f"scene {k}" for k in range(4)] + [f"a new shape {i}" for i in range(4)] + [f"the flag of entity {i}" for i in range(4)]
    labels = ["either"] * 4 + ["generate"] * 4 + ["retrieve"] * 4
    check, stats = fit_gallery_check(FakeEncoder(), gallery, prompts[:8], labels[:8])
    cos = check.best_cosine(prompts[:8])
    assert stats["train_accuracy"] == 1.0 and cos[4:].max() < check.threshold < cos[:4].min()
    assert check.holds(["scene 2", "a new shape"]).tolist() == [True, False]
    clf, _ = train_decision_classifier(FakeGILL(), prompts, labels)  # "either" prompts are skipped
    rule = ClassifierGalleryRule(FakeGILL(), clf, check)
    wins = retrieval_wins(rule.scores(["scene 1", "a new shape 9", "the flag of entity 9"]))
    assert wins.tolist() == [True, False, True]  # the classifier alone would generate the held scene
    assert not retrieval_wins(rule.scores(["红 scene 1"]))[0]  # words the dual encoder never saw: no gallery check
    assert ClassifierRule(FakeGILL(), clf).scores(["scene 1"])[0, 0] < 0.5
    with pytest.raises(TigerError, match="prompts the gallery answers"):
        fit_gallery_check(FakeEncoder(), gallery, prompts[4:8], labels[4:8])
    with pytest.raises(TigerError, match="gallery is empty"):
        fit_gallery_check(FakeEncoder(), gallery[:0], prompts[:8], labels[:8])
    with pytest.raises(TigerError, match="needs a gallery check"):
        make_rule("classifier+gallery", {"gill": FakeGILL()}, clf)


# -- bad input --------------------------------------------------------------------------------------


def test_an_empty_prompt_names_the_fix(toy):
    for prompt in ("", "   ", None):
        with pytest.raises(TigerError, match="prompt is empty"):
            answer(prompt, toy, FixedRule(1, 0))


def test_an_overlong_prompt_is_cut_and_said(toy, tiny_world):
    a = answer(tiny_world.queries.texts[0] + " and" * 400, toy, FixedRule(1, 0))
    assert len(a.prompt) == 400 and any("cut" in n for n in a.notes)


@pytest.mark.parametrize("prompt", ["红色的圆", "🔴🟦", "zzqx vvbr"])
def test_a_prompt_without_known_words_falls_back_to_generation_and_says_so(lmm, vq, tiger, prompt):
    a = answer(prompt, tiger, LikelihoodRule(lmm, vq, "reverse"))
    assert a.decision == "generate" and a.scores == {} and a.generated is not None
    assert any("cannot judge" in n and "generation" in n for n in a.notes)


def test_an_empty_gallery_gives_generation_only(lmm, vq, tiny_world):
    backend = tiger_backend(lmm, vq, tiny_world.gallery.images[:0])
    a = answer(tiny_world.queries.texts[0], backend, LikelihoodRule(lmm, vq, "reverse"))
    assert a.decision == "generate" and a.retrieved is None and any("generation only" in n for n in a.notes)


def test_a_missing_generator_gives_retrieval_only(lmm, vq, tiny_world):
    de = DualEncoder.create(TINY_DUAL_ENCODER)
    backend = agent_backend(de, None, tiny_world.gallery.images)
    a = answer(tiny_world.queries.texts[0], backend, LikelihoodRule(lmm, vq, "reverse"))
    assert a.decision == "retrieve" and a.generated is None and any("retrieval only" in n for n in a.notes)
    with pytest.raises(TigerError, match="neither a gallery nor a generator"):
        agent_backend(de, None, tiny_world.gallery.images[:0])


def test_unknown_backends_and_rules_list_the_choices(lmm, vq, tiny_world):
    zoo = {"lmm": lmm, "visual_tokenizer": vq}
    with pytest.raises(TigerError, match=", ".join(BACKENDS)):
        make_backend("dalle", zoo, tiny_world.gallery.images)
    with pytest.raises(TigerError, match=re.escape(", ".join(RULES))):
        make_rule("vote", zoo)
    with pytest.raises(TigerError, match="needs gill"):
        make_backend("gill", zoo, tiny_world.gallery.images)
    with pytest.raises(TigerError, match="needs GILL.*tiger zoo build"):
        make_rule("classifier", zoo)
    with pytest.raises(TigerError, match="must be a Backend"):
        answer("a red circle", "tiger", FixedRule(1, 0))
    assert isinstance(make_backend("tiger", zoo, tiny_world.gallery.images), Backend)
    assert isinstance(make_rule("forward", zoo), LikelihoodRule)


def test_batched_candidates_and_scores_equal_one_by_one(lmm, vq, tiger, tiny_world):
    prompts = list(tiny_world.queries.texts[:3])
    many = tiger.retrieve_many(prompts)
    assert [c.index for c in many] == [tiger.retrieve(p).index for p in prompts]
    generated = [Candidate(tiny_world.gallery.images[i]) for i in (5, 6, 7)]  # no codes: tokenized by the rule
    rule = LikelihoodRule(lmm, vq, "forward")
    batch = rule.scores(prompts, many, generated)
    single = np.concatenate([rule.scores([p], [r], [g]) for p, r, g in zip(prompts, many, generated)])
    assert batch.shape == (3, 2) and np.allclose(batch, single, atol=1e-4)


# -- the mini TIGeR-Bench ------------------------------------------------------------------------------


def test_the_classifier_never_trains_on_evaluation_prompts(tiny_world):
    from tigerlib.data.dataset import GOLD_LABEL
    from tigerlib.evaluation.unified_bench import bench_split

    evaluation, (train, labels) = bench_split(tiny_world, n=2)
    assert train and set(labels) == {"retrieve", "generate", "either"}
    evaluated = {t for q in evaluation.values() for t in q.texts}
    assert not evaluated & set(train)
    kind_of = {t: k for k in evaluation for t in tiny_world.queries.subset(k).texts}
    assert all(label == GOLD_LABEL[kind_of[t]] for t, label in zip(train, labels))


def test_heldout_language_decisions_score_the_rewritten_prompts(tiny_world):
    from dataclasses import replace

    from tigerlib.evaluation.unified_bench import bench_split, heldout_language_decisions

    evaluation, _ = bench_split(tiny_world, n=2)
    gold = {d: np.asarray(q.label).astype(str) for d, q in evaluation.items()}
    rewritten_knowledge = set(evaluation["knowledge"].heldout_texts)
    assert not rewritten_knowledge & set(evaluation["knowledge"].texts)

    class Reads:  # retrieves exactly the rewritten knowledge prompts
        def scores(self, prompts):
            return np.array([[1.0, 0.0] if p in rewritten_knowledge else [0.0, 1.0] for p in prompts])

    class Always:
        def scores(self, prompts):
            return np.tile([1.0, 0.0], (len(prompts), 1))

    out = heldout_language_decisions({"reads": Reads(), "always": Always()}, evaluation, gold)
    assert out["reads"] == {"knowledge": 1.0, "creative": 1.0, "all": 1.0}
    assert out["always"] == {"knowledge": 1.0, "creative": 0.0, "all": 0.5}
    assert heldout_language_decisions({"always": Always()}, {d: replace(q, heldout_texts=None) for d, q in evaluation.items()}, gold) is None


def test_the_bench_rows_have_the_issues_shape(toy, tiger, lmm, vq, tiny_world):
    from tigerlib.evaluation.unified_bench import DOMAINS, best_rows, findings, run_bench
    from tigerlib.models.judge import TINY_JUDGE, AttributeJudge

    torch.manual_seed(0)
    judge, de = AttributeJudge.create(TINY_JUDGE), DualEncoder.create(TINY_DUAL_ENCODER)
    result = run_bench({"tiger": tiger}, tiny_world, judge, de, lmm, vq, retrievers={"toy": toy.retriever}, n=2, keep=True)
    rows = {(r["name"], r["domain"]): r for r in result["rows"]}
    assert result["n_prompts"] == {d: 2 for d in DOMAINS}
    assert result["heldout_language"] is None  # no GILL, no learned rules
    keys = {"name", "backend", "rule", "domain", "judge_accuracy", "clip_t", "clip_i", "retrieved_share", "decision_accuracy"}
    assert all(keys <= set(r) for r in result["rows"])
    for name in ("generation only (tiger)", "retrieval only (tiger)", "tiger + forward", "tiger + reverse", "oracle (tiger)", "retrieval only (toy)"):
        assert {d for (n, d) in rows if n == name} == {*DOMAINS, "all"}, name
    gen, ret = rows[("generation only (tiger)", "all")], rows[("retrieval only (tiger)", "all")]
    assert gen["retrieved_share"] == 0 and ret["retrieved_share"] == 1
    assert rows[("generation only (tiger)", "knowledge")]["decision_accuracy"] == 0 and rows[("generation only (tiger)", "creative")]["decision_accuracy"] == 1
    assert rows[("generation only (tiger)", "common")]["decision_accuracy"] is None
    assert rows[("generation only (tiger)", "all")]["n_labelled"] == 4  # knowledge and creative
    for d in (*DOMAINS, "all"):  # the oracle is the ceiling of every rule on the same candidates
        for rule in ("forward", "reverse"):
            assert rows[("oracle (tiger)", d)]["judge_accuracy"] >= rows[(f"tiger + {rule}", d)]["judge_accuracy"]
    assert best_rows(result)["tiger"]["rule"] in ("forward", "reverse") and findings(result)
    records = result.pop("records")
    assert len(records) == 6 and {r["domain"] for r in records} == set(DOMAINS)  # one per prompt and backend
    rec = records[0]
    assert rec["choice"]["reverse"] == ("retrieve" if rec["scores"]["reverse"][0] >= rec["scores"]["reverse"][1] else "generate")
    import json

    json.dumps(result)  # without the records (images), the result is plain JSON
    from tigerlib.notebook import bench_browser, unified_explorer
    from tigerlib.viz import plot_bench

    assert plot_bench(result) is not None and bench_browser(records) is not None
    assert unified_explorer({"tiger": tiger}, {"reverse": LikelihoodRule(lmm, vq, "reverse")}, prompt=tiny_world.queries.texts[0]) is not None


def test_the_demo_answers_a_prompt_writes_its_figure_and_prints_the_decision(home, lmm, vq, tiny_world, capsys):
    import json
    from pathlib import Path

    from tigerlib.config import get_settings
    from tigerlib.demo import answer_prompt

    settings = get_settings(device="cpu")
    settings.home.mkdir(parents=True, exist_ok=True)
    out = answer_prompt(settings, tiny_world.queries.texts[0], world=tiny_world, zoo={"lmm": lmm, "visual_tokenizer": vq})
    assert Path(out["figure"]).stat().st_size > 1000 and out["decision"] in ("retrieve", "generate")
    assert out["decision"] in capsys.readouterr().out
    json.dumps(out)  # the --json answer object is plain JSON
    with pytest.raises(TigerError, match="tiger, gill, agent"):
        answer_prompt(settings, "a red circle", backend="dalle", world=tiny_world, zoo={"lmm": lmm, "visual_tokenizer": vq})


def test_the_tour_leaves_out_gills_decision_when_gill_is_not_built(home, tiny_world, capsys):
    from tigerlib.config import get_settings
    from tigerlib.demo import learned_answers

    figures = {}
    assert learned_answers(get_settings(device="cpu"), tiny_world, [0], figures) == [] and figures == {}
    assert "left out of the tour" in capsys.readouterr().out


def test_the_demo_trains_the_learned_rules_on_prompts_the_bench_never_evaluates_at_its_size(lmm, vq, tiny_world, capsys):
    from tigerlib.demo import demo_rule, demo_training_prompts
    from tigerlib.evaluation.unified_bench import bench_split

    n, train, labels = demo_training_prompts(tiny_world)
    evaluated = {t for q in bench_split(tiny_world, n=n)[0].values() for t in q.texts}
    assert train and evaluated and not set(train) & evaluated and {"retrieve", "generate", "either"} == set(labels)
    torch.manual_seed(0)
    zoo = {"gill": FakeGILL(), "dual_encoder": DualEncoder.create(TINY_DUAL_ENCODER), "lmm": lmm, "visual_tokenizer": vq}
    rule = demo_rule("classifier+gallery", zoo, tiny_world)
    assert isinstance(rule, ClassifierGalleryRule) and np.isfinite(rule.check.threshold)
    assert f"on {len(train)} labelled prompts" in capsys.readouterr().err  # it says what it trained on
    assert isinstance(demo_rule("classifier", zoo, tiny_world), ClassifierRule) and demo_rule("reverse", zoo, tiny_world).name == "reverse"
    with pytest.raises(TigerError, match="needs dual_encoder"):
        demo_rule("classifier+gallery", {"gill": FakeGILL()}, tiny_world)


def test_the_gallery_threshold_is_one_of_the_best_cuts():
    """Best cuts that are not neighbours (0.775 and 0.875 here): their median (0.825) would score
    0.5, worse than either; the check takes a cut of the longest best run and reports its accuracy."""
    from tigerlib.methods.unified import GalleryCheck

    gallery = np.zeros((4, 2, 2, 3), np.uint8)
    prompts = [f"level {x}" for x in (0.75, 0.8, 0.85, 0.9)]
    check, stats = fit_gallery_check(FakeEncoder(), gallery, prompts, ["generate", "either"] * 2)
    cos = check.best_cosine(prompts)
    assert stats["train_accuracy"] == 0.75 == np.mean((cos >= check.threshold) == np.array([False, True] * 2))
    with pytest.raises(TigerError, match="finite"):
        GalleryCheck(check.dense, float("nan"))
    assert check.best_cosine("scene 1").shape == (1,)  # one bare string is one prompt
