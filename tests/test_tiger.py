import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tigerlib.errors import TigerError
from tigerlib.evaluation import recall_at_k
from tigerlib.methods.tiger import TIGeR

PROMPTS = ["a small red circle on the left, gray background", "", "qwzx blorp flurb"]


@pytest.fixture(scope="module")
def gallery_codes(tiny_world, vq):
    return vq.encode(tiny_world.gallery.images[:12])


@pytest.fixture(scope="module")
def tiger(lmm, gallery_codes):
    return TIGeR(lmm, gallery_codes)


def test_proxies_full_ranking(tiger, lmm, gallery_codes):
    n = len(gallery_codes)
    fwd = tiger.proxy_scores(PROMPTS, "forward")
    assert fwd.shape == (len(PROMPTS), n)
    assert torch.allclose(fwd[0], lmm.logp_image_given_text([PROMPTS[0]] * n, gallery_codes), atol=1e-4)
    null = tiger.null_scores()
    assert tiger.null_scores() is null  # computed once per gallery, then cached
    assert torch.allclose(tiger.proxy_scores(PROMPTS, "pmi", eta=0.5, forward=fwd), fwd - 0.5 * null[None])
    rev = tiger.proxy_scores(PROMPTS, "reverse")
    assert rev.shape == (len(PROMPTS), n)
    assert torch.allclose(rev[1, 3:4], lmm.logp_text_given_image(gallery_codes[3:4], [PROMPTS[1]]), atol=1e-4)
    with pytest.raises(TigerError, match="unknown proxy"):
        tiger.proxy_scores(PROMPTS, "sideways")
    one = tiger.forward_scores(PROMPTS[0])  # one string: one row, [N]
    assert one.shape == (n,) and torch.allclose(one, fwd[0], atol=1e-4)
    assert tiger.reverse_scores(PROMPTS[1]).shape == (n,)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_exhaustive_beam_search_equals_full_ranking(tiger, eta):
    """With as many beams as images, the search scores every image by its full PMI."""
    full = tiger.proxy_scores([PROMPTS[0]], "pmi", eta=eta)[0]
    res = tiger.search(PROMPTS[0], num_beams=1000, eta=eta)  # above the gallery size: capped
    assert res.num_beams == tiger.trie.num_leaves
    ranking = res.ranked_items()
    assert sorted(ranking.tolist()) == list(range(len(tiger)))
    expected = torch.repeat_interleave(res.scores, torch.tensor([len(i) for i in res.item_ids]))
    assert torch.allclose(full[ranking], expected, atol=1e-3)
    assert torch.equal(ranking[0:1], full.argmax().reshape(1)) or torch.isclose(full[ranking[0]], full.max(), atol=1e-3)


def test_early_stop_and_small_beams(tiger):
    res = tiger.search(PROMPTS[2], num_beams=3, eta=1.0)
    assert res.stopped_early_at is not None and res.stopped_early_at < tiger.trie.depth
    items = res.ranked_items()
    assert len(items) == 3 and ((items >= 0) & (items < len(tiger))).all()
    assert (res.scores[:-1] >= res.scores[1:]).all()


def test_reverse_reranking(tiger, lmm, gallery_codes):
    r = tiger.retrieve(PROMPTS[0], num_beams=8, rerank=5)
    assert r.reranked == 5 and len(r.ranking) == 8
    head = r.ranking[:5]
    rev = lmm.logp_text_given_image(gallery_codes[head], [PROMPTS[0]] * 5)
    assert torch.allclose(r.scores[:5], rev, atol=1e-4) and (rev[:-1] >= rev[1:]).all()
    # one scale: the tail (not re-ranked) is below every re-ranked score; its PMI stays in .pmi
    assert r.score_name == "reverse" and torch.isneginf(r.scores[5:]).all()
    assert torch.equal(r.pmi[5:], r.search.scores[5:]) and (r.scores[:-1] >= r.scores[1:]).all()
    assert set(r.ranking[:5].tolist()) == set(r.search.ranked_items()[:5].tolist())  # same candidates, new order
    plain = tiger.retrieve(PROMPTS[0], num_beams=8, rerank=0)
    assert torch.equal(plain.ranking, r.search.ranked_items()) and plain.score_name == "pmi"
    every = tiger.retrieve(PROMPTS[0], num_beams=8)  # default: every candidate the beams reached
    assert every.reranked == 8
    rev = lmm.logp_text_given_image(gallery_codes[every.ranking], [PROMPTS[0]] * 8)
    assert torch.allclose(every.scores, rev, atol=1e-4) and (rev[:-1] >= rev[1:]).all()
    with pytest.raises(TigerError, match="rerank"):
        tiger.retrieve(PROMPTS[0], num_beams=8, rerank=-1)


def test_duplicates_are_returned_together(lmm, gallery_codes):
    codes = torch.cat([gallery_codes[:5], gallery_codes[2:3], gallery_codes[2:3]])  # 5, 6 copy image 2
    t = TIGeR(lmm, codes)
    assert t.num_duplicates == 2
    ranking = t.retrieve("a red circle", num_beams=50, rerank=0).ranking.tolist()
    at = ranking.index(2)
    assert sorted(ranking[at : at + 3]) == [2, 5, 6]
    assert sorted(ranking) == list(range(7))
    for rerank in range(1, 6):  # re-ranking moves a sequence's images as one candidate
        r = t.retrieve("a red circle", num_beams=50, rerank=rerank)
        ranking = r.ranking.tolist()
        at = ranking.index(2)
        assert sorted(ranking[at : at + 3]) == [2, 5, 6] and r.reranked == rerank
        assert torch.equal(r.scores[at : at + 3], r.scores[at].expand(3))


def test_bad_inputs(lmm, gallery_codes):
    with pytest.raises(TigerError, match="empty"):
        TIGeR(lmm, gallery_codes[:0])
    with pytest.raises(TigerError, match="shape"):
        TIGeR(lmm, gallery_codes[:, :10])
    with pytest.raises(TigerError, match="out of range"):
        TIGeR(lmm, torch.full((2, 64), 10_000))
    t = TIGeR(lmm, gallery_codes[:4])
    one = t.retrieve("", num_beams=1, rerank=3)  # empty prompt, one beam: still an answer
    assert len(one.ranking) == 1 and one.reranked == 1
    with pytest.raises(TigerError, match="num_beams"):
        t.search("a", num_beams=0)


def test_recall_of_rankings():
    rankings = [torch.tensor([3, 1, 2]), torch.tensor([0]), torch.tensor([5, 4])]
    hits = [np.array([1]), np.array([9]), np.array([5, 4])]
    assert recall_at_k(rankings, hits, ks=(1, 2)) == {1: round(1 / 3, 4), 2: round(2 / 3, 4)}


def test_batch_and_single_conventions(tiger):
    one = tiger.retrieve(PROMPTS[0], num_beams=4, rerank=2)
    both = tiger.retrieve([PROMPTS[0], PROMPTS[2]], num_beams=4, rerank=2)
    assert isinstance(both, list) and len(both) == 2 and torch.equal(both[0].indices, one.indices)
    assert isinstance(tiger.search(PROMPTS[0], num_beams=2), type(tiger.search([PROMPTS[0]], num_beams=2)[0]))
    idx, scores = tiger.top_k(PROMPTS[0], k=3, num_beams=4)
    assert idx.shape == scores.shape == (3,)
    assert len(tiger.retrieve(PROMPTS[0], k=2, num_beams=4).indices) == 2
    with pytest.raises(TigerError, match="at least one"):
        tiger.retrieve(PROMPTS[0], k=0)


def test_evaluation_json_shape(lmm, vq, tiny_world):
    from tigerlib.evaluation.tiger_eval import evaluate_tiger
    from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder
    from tigerlib.models.judge import TINY_JUDGE, AttributeJudge

    judge = AttributeJudge.create(TINY_JUDGE)
    out = evaluate_tiger(lmm, vq, DualEncoder.create(TINY_DUAL_ENCODER), tiny_world, n_queries=2, num_beams=4, rerank=2, etas=(0.0, 1.0), beam_counts=(2, 4, 1000), judge=judge)
    json.dumps(out)
    assert out["knowledge"]["judge"]["fbs_rerank"]["entity"] is not None and out["common"]["judge"]["dense"]["all"] is not None
    for kind in ("knowledge", "common"):
        r = out[kind]
        assert set(r["proxy"]) == {"forward", "pmi", "reverse"} and set(r["proxy"]["pmi"]) == {"r1", "r5"}
        for method in ("fbs", "fbs_rerank", "dense"):
            assert set(r[method]) == {"r1", "r5", "r10"} and all(0.0 <= v <= 1.0 for v in r[method].values())
        assert r["seconds_per_query"]["fbs"] > 0
    assert [row["eta"] for row in out["eta_sweep"]] == [0.0, 1.0]
    assert [row["num_beams"] for row in out["beam_sweep"]] == [2, 4, 1000]
    for kind in ("knowledge", "common"):  # the sweep's row at num_beams is the main run's search
        row = out["beam_sweep"][1][kind]
        assert row == {**{f"fbs_{k}": v for k, v in out[kind]["fbs"].items()}, **{f"fbs_rerank_{k}": v for k, v in out[kind]["fbs_rerank"].items()},
                       "seconds_per_query": out[kind]["seconds_per_query"]["fbs"]}


def test_retrieval_benchmark_json_and_cache(lmm, vq, tiny_world, tmp_path):
    from tigerlib.evaluation.retrieval_benchmark import run_retrieval_benchmark
    from tigerlib.models.dual_encoder import TINY_DUAL_ENCODER, DualEncoder

    enc = DualEncoder.create(TINY_DUAL_ENCODER)
    out = run_retrieval_benchmark(lmm, vq, enc, tiny_world, tmp_path, sizes=(30, 10), n_queries=2, num_beams=4)
    assert [(r["n"], r["method"]) for r in out["results"]] == [(10, "generative"), (10, "dense"), (30, "generative"), (30, "dense")]
    assert all(r["ms_per_query"] > 0 for r in out["results"])
    assert all(1 <= r["search_steps"] <= vq.tokens_per_image for r in out["results"][::2])
    cached = list(tmp_path.glob("scaling-*.npz"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    run_retrieval_benchmark(lmm, vq, enc, tiny_world, tmp_path, sizes=(10, 30), n_queries=1, num_beams=2)
    assert cached[0].stat().st_mtime_ns == before  # tokenized and embedded once
    from tigerlib.evaluation.retrieval_benchmark import scaling_gallery

    codes30, emb30 = scaling_gallery(tiny_world, vq, enc, 30, tmp_path)
    codes12, emb12 = scaling_gallery(tiny_world, vq, enc, 12, tmp_path)  # a slice of the cached 30
    assert len(list(tmp_path.glob("scaling-*.npz"))) == 1
    assert torch.equal(codes12, codes30[:12]) and torch.equal(emb12, emb30[:12])
    fresh, _ = scaling_gallery(tiny_world, vq, enc, 12, tmp_path / "other")  # built anew: the same images
    assert torch.equal(fresh, codes12)


def test_cli_without_zoo_names_the_fix(home):
    r = subprocess.run([sys.executable, "-m", "tigerlib", "eval", "tiger", "--json"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and "tiger zoo build" in r.stderr


def test_top_k_matches_retrieve(tiger):
    idx, scores = tiger.top_k([PROMPTS[0], PROMPTS[2]], k=4, num_beams=6, rerank=3)
    assert idx.shape == scores.shape == (2, 4)
    r = tiger.retrieve(PROMPTS[0], num_beams=6, rerank=3)
    assert idx[0].tolist() == r.ranking[:4].tolist()
    idx, scores = tiger.top_k([PROMPTS[0]], k=5, num_beams=2, rerank=0)  # two beams find two images
    assert idx[0, 2:].tolist() == [-1, -1, -1] and np.isneginf(scores[0, 2:]).all()
