"""GRACE on tiny models: identifiers as new tokens, trie-constrained decoding, training, the zoo entry."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from tigerlib.errors import TigerError
from tigerlib.methods.grace import GRACE, TINY_GRACE, TYPES, gallery_identifiers, pseudo_queries, train_grace

N = 12


@pytest.fixture(scope="module")
def gallery(tiny_world):
    return tiny_world.gallery.subset(np.r_[0:N - 2, len(tiny_world.gallery) - 2 : len(tiny_world.gallery)])  # scenes and 2 entities


@pytest.fixture(scope="module")
def codes(gallery, vq):
    return vq.encode(gallery.images)


@pytest.fixture(scope="module")
def embeddings():
    return np.random.default_rng(0).normal(size=(N, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def queries(lmm, codes):
    return pseudo_queries(lmm, codes, n=2, candidates=2, seed=0)


@pytest.fixture(scope="module")
def trained(lmm, gallery, codes, embeddings, queries, one_thread):
    out = {}
    for t in TYPES:
        ids = gallery_identifiers(t, gallery, embeddings=embeddings, config=TINY_GRACE)
        out[t] = train_grace(lmm, ids, codes, queries, replace(TINY_GRACE, id_type=t), seed=0, image_embeddings=embeddings)
    return out


def test_pseudo_queries_are_the_captioners_words(lmm, codes, queries):
    assert len(queries) == N and all(1 <= len(q) <= 2 for q in queries)
    assert all(len(set(q)) == len(q) for q in queries)  # distinct
    assert [q[0] for q in queries] == lmm.caption(codes, max_new_tokens=24)  # the greedy caption comes first
    again = pseudo_queries(lmm, codes, n=2, candidates=2, seed=0)
    assert again == queries  # seeded


@pytest.mark.parametrize("id_type", TYPES)
def test_every_type_trains_and_retrieves_only_gallery_images(trained, id_type):
    model, stats = trained[id_type]
    assert stats["train_seconds"] >= 0 and stats["final_loss_retrieve"] is not None
    assert stats["added_parameters"] == model.added_parameters > 0
    for prompt in ["a small red circle on the left, gray background", "", "qwzx blorp", "红色的圆"]:
        r = model.retrieve(prompt, k=N)
        assert len(r.indices) >= 1
        assert ((r.indices >= 0) & (r.indices < N)).all()  # the trie never lets a non-gallery identifier out
        assert len(set(r.indices.tolist())) == len(r.indices)
        assert (r.scores[:-1] >= r.scores[1:]).all()
    assert model.retrieve("qwzx blorp").known_word_share == 0.0


def test_search_sequences_are_gallery_identifiers(trained):
    model, _ = trained["numeric"]
    res = model.search("a large blue square", num_beams=5)
    gallery_ids = {tuple(s) for s in model.sequences}
    for row, items in zip(res.sequences.tolist(), res.item_ids):
        seq = tuple(t for t in row if t >= 0)
        assert seq in gallery_ids
        assert [int(i) for i in items] == sorted(int(j) for j, s in zip(model.identifiers.images, model.sequences) if tuple(s) == seq)


def test_batched_retrieval_equals_one_by_one(trained):
    model, _ = trained["structured"]
    prompts = ["a large red triangle", "the flag of somewhere", "blue"]
    batched = model.retrieve(prompts, k=5)
    for p, b in zip(prompts, batched):
        one = model.retrieve(p, k=5)
        assert torch.equal(one.indices, b.indices) and torch.allclose(one.scores, b.scores)


def test_a_short_training_run_lowers_the_loss(lmm, gallery, codes, embeddings, queries, one_thread):
    ids = gallery_identifiers("atomic", gallery, embeddings=embeddings, config=TINY_GRACE)
    _, stats = train_grace(lmm, ids, codes, queries, replace(TINY_GRACE, id_type="atomic", steps=30, lr=1e-2, batch_size=12), image_embeddings=embeddings)
    curve = stats["loss_curve"]["retrieve"]
    assert np.mean(curve[-5:]) < np.mean(curve[:5])
    assert stats["final_loss_memorize"] < stats["loss_curve"]["memorize"][0]


def test_atomic_rows_start_from_the_image_embeddings(lmm, gallery, embeddings):
    ids = gallery_identifiers("atomic", gallery, embeddings=embeddings, config=TINY_GRACE)
    model = GRACE.from_lmm(lmm, ids, replace(TINY_GRACE, id_type="atomic"), embeddings)
    head = model.model.get_output_embeddings().weight[model.base_vocab + 1 :].detach()
    e = torch.nn.functional.normalize(torch.tensor(embeddings), dim=-1)
    # a random projection keeps the geometry: row similarities follow the embeddings' similarities
    corr = np.corrcoef((e @ e.T).flatten(), torch.nn.functional.normalize(head, dim=-1).matmul(torch.nn.functional.normalize(head, dim=-1).T).flatten())[0, 1]
    assert corr > 0.5
    with pytest.raises(TigerError, match="image embeddings"):
        GRACE.from_lmm(lmm, ids, replace(TINY_GRACE, id_type="atomic"))


def test_semantic_ids_answer_with_every_image_of_a_caption(lmm, gallery, codes, queries, embeddings):
    caps = [["a small red circle"] if i < 2 else c for i, c in enumerate(gallery.captions)]  # images 0 and 1 share a caption
    ids = gallery_identifiers("semantic", gallery, captions=caps, config=TINY_GRACE)
    model = GRACE.from_lmm(lmm, ids, replace(TINY_GRACE, id_type="semantic"))
    r = model.retrieve("a small red circle", k=N)
    first = r.indices.tolist()
    if 0 in first[:2] or 1 in first[:2]:
        assert set(first[:2]) == {0, 1}  # one decoded caption, both images, adjacent
    assert abs(first.index(0) - first.index(1)) == 1


def test_duplicate_images_get_distinct_identifiers(lmm, gallery, codes, embeddings):
    """Byte-identical gallery images get distinct ids (they are different gallery entries) for every
    type but semantic, where identical captions name both."""
    from tigerlib.data.dataset import CaptionedImages

    idx = np.r_[0, 0, 1:N - 1]
    dup = CaptionedImages("dup", gallery.images[idx], [gallery.captions[i] for i in idx], {k: v[idx] for k, v in gallery.attributes.items()})
    emb = embeddings[idx]
    for t in ("string", "numeric", "structured", "atomic"):
        ids = gallery_identifiers(t, dup, embeddings=emb, config=TINY_GRACE)
        assert ids.of_image(0) != ids.of_image(1)
    sem = gallery_identifiers("semantic", dup, config=TINY_GRACE)
    assert set(sem.of_image(0)) == set(sem.of_image(1))


def test_bad_inputs(lmm, gallery, codes, embeddings, queries):
    with pytest.raises(TigerError, match="string, numeric, semantic, structured, atomic"):
        gallery_identifiers("visualish", gallery)
    ids = gallery_identifiers("numeric", gallery, config=TINY_GRACE)
    with pytest.raises(TigerError, match="config asks for"):
        train_grace(lmm, ids, codes, queries, TINY_GRACE)
    with pytest.raises(TigerError, match="pseudo-queries"):
        train_grace(lmm, ids, codes, queries[:3], replace(TINY_GRACE, id_type="numeric"))


def test_describe_from_the_identifier(trained):
    model, _ = trained["atomic"]
    texts = model.describe([0, N - 1], max_new_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    with pytest.raises(TigerError, match="no identifier"):
        model.describe([N + 5])


def test_zoo_entry_never_reads_the_evaluation_queries(tiny_world, lmm, vq, one_thread):
    """The zoo trains GRACE from the gallery and pseudo-queries; the world's queries stay unread."""
    from tigerlib.methods.grace import train_for_zoo

    class NoQueries:
        def __init__(self, world):
            self._w = world

        def __getattr__(self, name):
            if name == "queries":
                raise AssertionError("GRACE's training read the evaluation queries")
            return getattr(self._w, name)

    class Encoder:  # a stand-in dual encoder: fixed random embeddings
        def encode_images(self, images, batch_size=512):
            return torch.nn.functional.normalize(torch.randn(len(images), 8, generator=torch.Generator().manual_seed(0)), dim=-1)

        def encode_text(self, texts, batch_size=512):
            return torch.nn.functional.normalize(torch.randn(len(texts), 8, generator=torch.Generator().manual_seed(1)), dim=-1)

    model, stats = train_for_zoo(NoQueries(tiny_world), replace(TINY_GRACE, id_type="structured"), 0, deps={"lmm": lmm, "visual_tokenizer": vq, "dual_encoder": Encoder()})
    assert len(model) == len(tiny_world.gallery) and stats["train_seconds"] > 0
    with pytest.raises(TigerError, match="dual_encoder"):
        train_for_zoo(tiny_world, TINY_GRACE, 0, deps={"lmm": lmm, "visual_tokenizer": vq})


def test_save_and_load_roundtrip(trained, tmp_path):
    from safetensors.torch import load_file, save_file

    model, _ = trained["numeric"]
    model.save_files(tmp_path)
    save_file({k: v.contiguous() for k, v in model.model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    again = GRACE.create(model.config, "cpu", tmp_path)
    again.model.load_state_dict(load_file(tmp_path / "model.safetensors"))
    again.model.eval()
    a, b = model.retrieve("a large green ring", k=5), again.retrieve("a large green ring", k=5)
    assert torch.equal(a.indices, b.indices) and torch.allclose(a.scores, b.scores, atol=1e-5)
