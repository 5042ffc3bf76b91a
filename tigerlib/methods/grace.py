"""GRACE: generative retrieval by memorizing every gallery image as an identifier inside the LMM.

(Li et al., "Generative Cross-Modal Retrieval: Memorizing Images in Multimodal Language Models for
Retrieval and Beyond", ACL 2024.) Starting from the zoo's unified LMM, one fine-tune teaches two
things at once, as the released code does:

- **learning to memorize**: ``<bos> <boi> {image tokens} <eoi> <id> {identifier} <eos>``;
- **learning to retrieve**: ``<bos> {query} <id> {identifier} <eos>``, where the queries are
  *pseudo-queries* that the LMM's own captioner writes for the gallery images (a greedy caption
  and sampled ones): training never reads the evaluation queries.

The loss is on the identifier and ``<eos>`` only. Retrieval is beam search (10 beams, the paper's
default) after ``<bos> {query} <id>``, constrained by a trie over the gallery's identifiers, so
every finished beam names gallery images (:class:`GRACE` is a :class:`Retriever`).

The five identifier types (built by ``tigerlib.identifiers``), as tokens of the mini LMM:

- ``string``: the index as text. The mini tokenizer is word-level and keeps a number whole, so a
  string id is one new token per image: the atomic type without its image-embedding start.
  (A subword tokenizer at full scale splits it into pieces.)
- ``numeric``: the index as digits, ten new digit tokens.
- ``semantic``: a caption of the image in the LMM's own words; a decoded caption answers with
  every gallery image that has it.
- ``structured``: hierarchical k-means over dual-encoder image embeddings, one new token per
  cluster symbol.
- ``atomic``: one new token per image whose output row (a classification head over the gallery)
  and input row start from the image's dual-encoder embedding, projected to the LM width.

New tokens get new rows at the end of the LMM's embedding and output matrices; the tokenizer is
the LMM's own, and GRACE keeps the map from identifier symbols to the new token ids.

Byte-identical gallery images are different gallery entries: every type but semantic gives them
distinct identifiers (nothing in the image tells them apart, so a query finds either one);
semantic ids name both when their captions are the same, and both are returned together.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..decoding.beam_search import BeamSearchResult, CausalLMScorer, constrained_beam_search
from ..decoding.trie import TensorTrie
from ..errors import TigerError
from ..identifiers import Identifiers, build_identifiers, words
from ..models.image_token_lm import pad_right
from ..models.lmm import BOI, BOS, EOI, EOS, PAD
from ..models.text_tokenizer import load_text_tokenizer, save_text_tokenizer
from ..models.training import Phases, warmup_stable_decay
from ..models.vocabulary import known_word_shares
from .retriever import Ranking, Retriever

TYPES = ("string", "numeric", "semantic", "structured", "atomic")


@dataclass(frozen=True)
class GRACEConfig:
    id_type: str = "atomic"
    steps: int = 100
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 0.0
    warmup: int = 20
    decay: int = 35  # the last steps' cosine decay (warmup_stable_decay)
    memorize_share: float = 0.1  # share of learning-to-memorize sequences in a batch; the rest learn to retrieve
    pseudo_queries: int = 3  # per gallery image, written by the LMM's captioner ...
    candidates: int = 8  # ... the best of this many (greedy + sampled) by the dual encoder's similarity to the image
    top_p: float = 0.9  # nucleus of the sampled captions
    k: int = 30  # structured ids: clusters per level (GRACE: 30)
    leaf_size: int = 30  # structured ids: split until a cluster holds at most this many images
    num_beams: int = 10
    grad_clip: float = 1.0


# The zoo's: one recipe, except string and numeric ids, whose new rows start random (atomic rows start
# from the image embeddings): on the 2-core Intel machine string reached knowledge R@1 0.64 and common
# R@10 0.21 in 100 steps, 0.96 / 0.51 in 150, 0.98 / 0.91 in 200 (47 s of training); numeric (on the
# bf16 visual tokenizer's LMM) knowledge R@10 0.25 in 100 steps, 0.28 in 150, 0.48 in 200 (52 s).
GRACE_RECIPES = {t: GRACEConfig(id_type=t) for t in ("string", "numeric", "semantic", "structured", "atomic")}
GRACE_RECIPES["string"] = GRACEConfig(id_type="string", steps=200, decay=70)
GRACE_RECIPES["numeric"] = GRACEConfig(id_type="numeric", steps=200, decay=70)
TINY_GRACE = GRACEConfig(steps=4, batch_size=8, warmup=1, decay=1, pseudo_queries=2, candidates=3, k=3, leaf_size=4)


def new_symbols(identifiers: Identifiers) -> list[str]:
    """The identifier symbols that get new token rows, in order of first use (so that adding
    images later appends rows and keeps the old ones): none for semantic ids, which are words."""
    if identifiers.kind == "semantic":
        return []
    return list(dict.fromkeys(t for seq in identifiers.sequences for t in seq))


def check_type(id_type: str) -> str:
    if id_type not in TYPES:
        raise TigerError(f"unknown GRACE identifier type {id_type!r}: use one of {', '.join(TYPES)}")
    return id_type


# -- pseudo-queries --------------------------------------------------------------------------------


@torch.no_grad()
def sample_captions(lmm, codes, n: int, top_p: float = 0.9, seed: int = 0, max_new_tokens: int = 24, images_per_batch: int = 32) -> list[list[str]]:
    """``n`` captions per image from the LMM's captioner: the greedy one first, then nucleus
    samples. The image prefix runs once per image and its KV cache is shared by the n rows."""
    if n < 1 or not 0 < top_p <= 1:
        raise TigerError(f"need n >= 1 captions and 0 < top_p <= 1, got n={n}, top_p={top_p}")
    prefix = torch.tensor(lmm._image_prefix(codes), dtype=torch.long)  # one length: no padding
    word_ids = torch.cat([torch.tensor([EOS]), torch.arange(lmm.first_word, lmm.vocab_size)]).to(lmm.device)
    gen = torch.Generator().manual_seed(int(seed))
    out: list[list[str]] = []
    for lo in tqdm(range(0, len(prefix), images_per_batch), desc="captions", leave=False, disable=len(prefix) <= images_per_batch):
        first = lmm.model(input_ids=prefix[lo : lo + images_per_batch].to(lmm.device), use_cache=True, logits_to_keep=1)
        cache, logits = first.cache, first.logits[:, -1].repeat_interleave(n, 0)
        cache.batch_repeat_interleave(n)
        rows = len(logits)
        greedy = torch.arange(rows) % n == 0
        chosen, done = [], torch.zeros(rows, dtype=torch.bool)
        for _ in range(max_new_tokens):
            probs = F.softmax(logits[:, word_ids].float(), -1).cpu()
            sorted_p, order = probs.sort(-1, descending=True)
            sorted_p = sorted_p * ((sorted_p.cumsum(-1) - sorted_p) < top_p)
            sampled = order.gather(1, torch.multinomial(sorted_p / sorted_p.sum(-1, keepdim=True), 1, generator=gen)).squeeze(1)
            tok = word_ids.cpu()[torch.where(greedy, order[:, 0], sampled)]
            chosen.append(tok)
            done |= tok == EOS
            if bool(done.all()):
                break
            logits = lmm.model(input_ids=tok[:, None].to(lmm.device), cache=cache, use_cache=True).logits[:, -1]
        ids = torch.stack(chosen, 1).tolist()
        for i in range(0, rows, n):
            texts = []
            for row in ids[i : i + n]:
                row = row[: row.index(EOS)] if EOS in row else row
                texts.append(lmm._detokenize(row))
            out.append(texts)
    return out


def pseudo_queries(lmm, codes, n: int = 3, candidates: int = 8, top_p: float = 0.9, seed: int = 0, dual_encoder=None, images=None) -> list[list[str]]:
    """``n`` distinct pseudo-queries per image written by the LMM's captioner. With a
    ``dual_encoder`` (and the ``images``), ``candidates`` captions are sampled and the ``n`` it
    finds closest to the image are kept (caption filtering, as BLIP's CapFilt does); without, the
    first ``n`` samples. GRACE learns to retrieve from these, never from evaluation queries."""
    if candidates < n:
        raise TigerError(f"need candidates >= n, got candidates={candidates}, n={n}")
    sampled = sample_captions(lmm, codes, candidates if dual_encoder is not None else n, top_p, seed)
    if dual_encoder is None:
        return [list(dict.fromkeys(c)) for c in sampled]
    image_emb = dual_encoder.encode_images(images)
    out = []
    for caps, e in zip(sampled, image_emb):
        caps = list(dict.fromkeys(c for c in caps if c))
        sims = dual_encoder.encode_text(caps) @ e if caps else torch.zeros(0)
        out.append([caps[j] for j in torch.argsort(sims, descending=True)[:n].tolist()])
    return out


# -- the model -------------------------------------------------------------------------------------


class GRACE(Retriever):
    """A fine-tuned LMM that answers a query with gallery identifiers (``.model``, ``.tokenizer``,
    ``.identifiers``). ``retrieve`` ranks gallery images by the beam's log p(identifier | query)."""

    score_name = "logp"

    def __init__(self, model, tokenizer, identifiers: Identifiers, config: GRACEConfig, device="cpu"):
        check_type(identifiers.kind)
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.identifiers = identifiers
        self.config = config
        self.device = torch.device(device)
        self.base_vocab = len(tokenizer)
        self.id_token = self.base_vocab  # "<id>": an identifier follows
        new = new_symbols(identifiers)
        self.symbols = {s: self.base_vocab + 1 + i for i, s in enumerate(new)}
        self.vocab_size = self.base_vocab + 1 + len(new)
        if model.get_input_embeddings().num_embeddings != self.vocab_size:
            raise TigerError(f"the model has {model.get_input_embeddings().num_embeddings} token rows, these identifiers need {self.vocab_size}: rebuild it (`tiger zoo build`)")
        seqs = identifiers.token_sequences(tokenizer if identifiers.kind == "semantic" else self.symbols)
        if identifiers.kind == "semantic" and any(3 in s for s in seqs):  # <unk>
            raise TigerError("some semantic identifiers contain words the LMM's tokenizer lacks: build them from captions in the LMM's language")
        self.sequences = [list(s) + [EOS] for s in seqs]  # <eos> ends every identifier (variable lengths, prefixes)
        self.trie = TensorTrie.build(self.sequences, vocab_size=self.vocab_size, item_ids=identifiers.images)
        self.vocabulary = {w for w in tokenizer.get_vocab() if w.isalnum() or "'" in w}
        self.max_query_tokens = model.config.max_position_embeddings - 3 - max(len(s) for s in self.sequences)

    def __len__(self) -> int:
        return self.identifiers.n_images

    @property
    def added_parameters(self) -> int:
        """Parameters GRACE adds to the LMM: the new token rows of the input and output matrices."""
        return 2 * (self.vocab_size - self.base_vocab) * self.model.config.hidden_size

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_lmm(cls, lmm, identifiers: Identifiers, config: GRACEConfig, image_embeddings=None, seed: int = 0) -> "GRACE":
        """A copy of the LMM with rows for ``<id>`` and the identifier's symbols (atomic rows start
        from ``image_embeddings`` [N, d], projected to the LM width by a fixed random matrix)."""
        import copy

        check_type(identifiers.kind)
        model = copy.deepcopy(lmm.model).cpu()
        base = len(lmm.tokenizer)
        new = new_symbols(identifiers)
        model.resize_token_embeddings(base + 1 + len(new), mean_resizing=False)
        g = torch.Generator().manual_seed(seed)
        inp, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
        with torch.no_grad():
            for w in (inp, out):  # new rows: random, at the scale of the trained rows
                w[base:] = torch.randn(w.shape[0] - base, w.shape[1], generator=g) * w[:base].std()
            if identifiers.kind == "atomic":
                if image_embeddings is None:
                    raise TigerError("atomic identifiers start from image embeddings: pass image_embeddings= (the dual encoder's)")
                emb = F.normalize(torch.as_tensor(np.asarray(image_embeddings), dtype=torch.float32), dim=-1)
                if len(emb) != identifiers.n_images:
                    raise TigerError(f"got {len(emb)} image embeddings for {identifiers.n_images} images: pass one per gallery image")
                proj = torch.randn(emb.shape[1], inp.shape[1], generator=g) / emb.shape[1] ** 0.5
                row_of = {t: base + 1 + j for j, t in enumerate(new)}
                rows = torch.tensor([row_of[f"<id_{i}>"] for i in range(identifiers.n_images)])
                for w in (inp, out):
                    start = emb @ proj
                    w[rows] = start / start.norm(dim=-1, keepdim=True) * w[:base].norm(dim=-1).mean()
        return cls(model, lmm.tokenizer, identifiers, config, lmm.device)

    @classmethod
    def create(cls, config: GRACEConfig, device="cpu", folder: Path | None = None) -> "GRACE":
        """A model with random weights in the shape of a saved one (its weights are loaded next)."""
        from transformers import LlamaConfig, LlamaForCausalLM

        if folder is None:
            raise TigerError("GRACE.create needs the checkpoint folder (tokenizer, identifiers, model config)")
        folder = Path(folder)
        tokenizer = load_text_tokenizer(folder)
        ids = Identifiers.load(folder / "identifiers.json")
        llama = LlamaConfig.from_dict(json.loads((folder / "model_config.json").read_text()))
        return cls(LlamaForCausalLM(llama), tokenizer, ids, config, device)

    def save_files(self, folder: Path) -> None:
        from ..storage import atomic_write_json

        save_text_tokenizer(self.tokenizer, folder)
        self.identifiers.save(Path(folder) / "identifiers.json")
        atomic_write_json(Path(folder) / "model_config.json", self.model.config.to_dict())

    # -- token ids ------------------------------------------------------------------------------
    def _query_ids(self, texts: list[str]) -> list[list[int]]:
        ids = self.tokenizer(["" if t is None else str(t) for t in texts], add_special_tokens=False)["input_ids"] if texts else []
        return [s[: self.max_query_tokens] for s in ids]

    def prompt_ids(self, text: str) -> torch.Tensor:
        """``<bos> {query} <id>`` as LongTensor [P]."""
        return torch.tensor(self._retrieve_prefix(self._query_ids([text])[0]))

    def _retrieve_prefix(self, query_ids: list[int]) -> list[int]:
        return [BOS] + query_ids + [self.id_token]

    def _memorize_prefix(self, image_token_ids: list[int]) -> list[int]:
        return [BOS, BOI] + image_token_ids + [EOI, self.id_token]

    def known_word_share(self, texts) -> list[float]:
        return known_word_shares(texts, self.vocabulary)

    # -- retrieval ------------------------------------------------------------------------------
    def search(self, prompt: str, num_beams: int | None = None) -> BeamSearchResult:
        """Trie-constrained beam search over the gallery's identifiers for one prompt."""
        scorer = CausalLMScorer(self.model, self.prompt_ids(prompt))
        return constrained_beam_search(scorer, self.trie, num_beams or self.config.num_beams)

    def _retrieve(self, prompts: list[str], k: int | None, num_beams: int | None = None) -> list[Ranking]:
        known = self.known_word_share(prompts)
        out = []
        for p, share in zip(prompts, known):
            t0 = time.perf_counter()
            res = self.search(p, num_beams)
            indices, scores, seen = [], [], set()
            for items, s in zip(res.item_ids, res.scores.tolist()):
                for i in items.tolist():  # a semantic id names every image that has that caption
                    if i not in seen:
                        seen.add(i)
                        indices.append(i)
                        scores.append(s)
            if k is not None:
                indices, scores = indices[:k], scores[:k]
            out.append(Ranking(p, torch.tensor(indices, dtype=torch.long), torch.tensor(scores), self.score_name, time.perf_counter() - t0, share))
        return out

    def identifier_text(self, image: int) -> str:
        """The first identifier of a gallery image, as text."""
        seqs = self.identifiers.of_image(int(image))
        return " ".join(seqs[0]) if seqs else ""

    # -- memorizing more images -------------------------------------------------------------------
    def with_new_images(self, identifiers: Identifiers, image_embeddings=None, seed: int = 0) -> "GRACE":
        """A copy whose trie and vocabulary cover ``identifiers`` (this model's, with new images
        appended by :func:`extend_identifiers`): new symbols get new rows; atomic ones start from
        ``image_embeddings`` (of every image, old and new) through the linear map that best sends
        the old images' embeddings to their current rows (least squares)."""
        import copy

        old = new_symbols(self.identifiers)
        symbols = new_symbols(identifiers)
        if symbols[: len(old)] != old or identifiers.sequences[: len(self.identifiers.sequences)] != self.identifiers.sequences:
            raise TigerError("the new identifiers must extend this model's (old images first, unchanged): use extend_identifiers(model.identifiers, ...)")
        model = copy.deepcopy(self.model)
        model.resize_token_embeddings(self.base_vocab + 1 + len(symbols), mean_resizing=False)
        g = torch.Generator().manual_seed(seed)
        first_new = self.vocab_size
        with torch.no_grad():
            for w in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
                w[first_new:] = torch.randn(len(w) - first_new, w.shape[1], generator=g) * w[: self.base_vocab].std()
                if identifiers.kind == "atomic" and len(w) > first_new:
                    if image_embeddings is None:
                        raise TigerError("new atomic identifiers start from image embeddings: pass image_embeddings= (old and new images)")
                    emb = F.normalize(torch.as_tensor(np.asarray(image_embeddings), dtype=torch.float32), dim=-1)
                    n_old = self.identifiers.n_images
                    rows = w[self.base_vocab + 1 : first_new]
                    proj = torch.linalg.lstsq(emb[:n_old], rows).solution
                    w[first_new:] = emb[n_old : n_old + len(w) - first_new] @ proj
        return GRACE(model, self.tokenizer, identifiers, self.config, self.device)

    # -- beyond retrieval -------------------------------------------------------------------------
    @torch.no_grad()
    def describe(self, images, max_new_tokens: int = 20) -> list[str]:
        """Greedy text after ``<bos> <id> {identifier} describe the image .``: what the model says
        about a memorized image from its identifier alone. GRACE trains only image -> id and
        query -> id, so this measures what carries over in the other direction."""
        from ..models.lmm import DESCRIBE
        from ..models.text_tokenizer import IMAGE_OFFSET, check_layout

        describe = self.tokenizer([DESCRIBE], add_special_tokens=False)["input_ids"][0]
        word_ids = torch.cat([torch.tensor([EOS]), torch.arange(IMAGE_OFFSET + check_layout(self.tokenizer), self.base_vocab)])
        first = {}
        for j, i in enumerate(self.identifiers.images.tolist()):
            first.setdefault(i, self.sequences[j][:-1])
        out = []
        for i in np.atleast_1d(np.asarray(images, dtype=np.int64)).tolist():
            if i not in first:
                raise TigerError(f"image {i} has no identifier in this model: use 0..{len(self) - 1}")
            ids = torch.tensor([[BOS, self.id_token] + first[i] + describe], device=self.device)
            res = self.model(input_ids=ids, use_cache=True, logits_to_keep=1)
            said = []
            for _ in range(max_new_tokens):
                tok = word_ids[res.logits[0, -1, word_ids.to(self.device)].argmax()].item()
                if tok == EOS:
                    break
                said.append(tok)
                res = self.model(input_ids=torch.tensor([[tok]], device=self.device), cache=res.cache, use_cache=True)
            out.append(re.sub(r" ([,.?!'])", r"\1", " ".join(self.tokenizer.convert_ids_to_tokens(said))).replace("' ", "'"))
        return out


# -- training --------------------------------------------------------------------------------------


def train_grace(lmm, identifiers: Identifiers, codes, queries: list[list[str]], config: GRACEConfig, seed: int = 0, image_embeddings=None,
                grace: GRACE | None = None, images=None) -> tuple[GRACE, dict]:
    """Fine-tune (a copy of) the LMM to memorize the gallery and to retrieve from ``queries``
    (per image, texts naming it: pseudo-queries). ``grace``: continue training that model instead
    (new images: ``images`` says which to train on, default all)."""

    if config.id_type != identifiers.kind:
        raise TigerError(f"the config asks for {config.id_type!r} identifiers, got {identifiers.kind!r} ones")
    if len(queries) != identifiers.n_images or len(codes) != identifiers.n_images:
        raise TigerError(f"need codes and pseudo-queries for all {identifiers.n_images} images, got {len(codes)} and {len(queries)}")
    if not 0.0 <= config.memorize_share <= 1.0:
        raise TigerError(f"GRACEConfig.memorize_share={config.memorize_share}: use a share in [0, 1]")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    model_obj = grace or GRACE.from_lmm(lmm, identifiers, config, image_embeddings, seed)
    image_ids = lmm.image_token_ids(codes).tolist()
    query_ids = [model_obj._query_ids(q) for q in queries]
    owners = {}
    for j, i in enumerate(identifiers.images.tolist()):
        owners.setdefault(i, []).append(model_obj.sequences[j])
    pool = np.arange(identifiers.n_images) if images is None else np.asarray(images, dtype=np.int64)
    model = model_obj.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95), weight_decay=config.weight_decay)
    sched = warmup_stable_decay(opt, config.warmup, config.steps, config.decay)
    rng = np.random.default_rng(seed)
    losses = {"memorize": [], "retrieve": []}
    ph = Phases()
    order = rng.permutation(pool)
    pos = 0
    for step in (bar := tqdm(range(config.steps), desc=f"grace {identifiers.kind}", leave=False)):
        if pos + config.batch_size > len(order):
            order, pos = np.concatenate([order[pos:], rng.permutation(pool)]), 0
        batch, pos = order[pos : pos + config.batch_size], pos + config.batch_size
        memorize = rng.random(len(batch)) < config.memorize_share
        groups = {"memorize": [], "retrieve": []}
        for b, mem in zip(batch.tolist(), memorize):
            target = owners[b][rng.integers(len(owners[b]))]
            if mem:
                prefix = model_obj._memorize_prefix(image_ids[b])
            else:
                qs = query_ids[b]
                prefix = model_obj._retrieve_prefix(qs[rng.integers(len(qs))])
            groups["memorize" if mem else "retrieve"].append((prefix + target, len(prefix)))
        ph.mark("data")
        loss = 0.0
        for name, rows in groups.items():  # padded apart: memorize rows are long, query rows short
            if rows:
                part = _identifier_loss(model, [r for r, _ in rows], [s for _, s in rows])
                loss = loss + part * len(rows) / len(batch)
                losses[name].append(float(part.detach()))
        ph.mark("forward")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ph.mark("backward")
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        ph.mark("optimizer")
        if step % 20 == 0:
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    model.eval()
    tail = lambda v: round(float(np.mean(v[-20:])), 4) if v else None  # noqa: E731
    return model_obj, {
        "train_seconds": round(time.perf_counter() - t0, 3),
        "final_loss_memorize": tail(losses["memorize"]),
        "final_loss_retrieve": tail(losses["retrieve"]),
        "loss_curve": {k: [round(x, 4) for x in v] for k, v in losses.items()},
        "phases": ph.summary(),
        "added_parameters": model_obj.added_parameters,
    }


def _identifier_loss(model, seqs: list[list[int]], starts: list[int]) -> torch.Tensor:
    """Mean next-token loss over the identifier and <eos> of each sequence (from ``starts[i]`` on).
    The output matrix runs only where there is a loss: a few positions of each row."""
    ids, _ = pad_right(seqs, PAD)
    hidden = model.model(input_ids=ids).last_hidden_state  # right padding: no mask needed
    rows = torch.cat([torch.full((len(s) - st,), r) for r, (s, st) in enumerate(zip(seqs, starts))])
    cols = torch.cat([torch.arange(st, len(s)) for s, st in zip(seqs, starts)])
    logits = model.get_output_embeddings()(hidden[rows, cols - 1])
    return F.cross_entropy(logits.float(), ids[rows, cols])


def gallery_identifiers(id_type: str, gallery, captions: list[list[str]] | None = None, embeddings=None, config: GRACEConfig = GRACEConfig(), seed: int = 0) -> Identifiers:
    """The gallery's identifiers of one type. Semantic ids are ``captions`` (default: the
    gallery's own); structured ids cluster ``embeddings`` (the dual encoder's image embeddings)."""
    from ..data.dataset import CaptionedImages

    check_type(id_type)
    if id_type == "semantic" and captions is not None:
        gallery = CaptionedImages(gallery.name, gallery.images, captions, gallery.attributes)
    return build_identifiers(id_type, gallery, embeddings=embeddings, k=config.k, leaf_size=config.leaf_size, seed=seed)


def extend_identifiers(identifiers: Identifiers, new_gallery, embeddings=None, new_embeddings=None) -> Identifiers:
    """``identifiers`` plus ids for the images of ``new_gallery`` (numbered after the old ones):
    the next indices (string, numeric, atomic), their captions (semantic), or the cluster path of
    the nearest old leaf group by embedding, with the next free position in it (structured)."""
    n, m = identifiers.n_images, len(new_gallery)
    kind = identifiers.kind
    if kind == "string":
        seqs = [(str(n + j),) for j in range(m)]
    elif kind == "atomic":
        seqs = [(f"<id_{n + j}>",) for j in range(m)]
    elif kind == "numeric":
        width = identifiers.params.get("digits", len(identifiers.sequences[0]))
        if len(str(n + m - 1)) > width:
            raise TigerError(f"numeric ids have {width} digits, too few for {n + m} images: rebuild them for the larger gallery")
        seqs = [tuple(str(n + j).zfill(width)) for j in range(m)]
    elif kind == "semantic":
        pairs = [(words(c), n + j) for j, caps in enumerate(new_gallery.captions) for c in caps]
        return Identifiers(kind, identifiers.sequences + [s for s, _ in pairs], np.concatenate([identifiers.images, [i for _, i in pairs]]).astype(np.int64), n + m, identifiers.params)
    elif kind == "structured":
        if embeddings is None or new_embeddings is None:
            raise TigerError("new structured ids need the old and the new images' embeddings: pass embeddings= and new_embeddings=")
        e_old = F.normalize(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32), dim=-1)
        e_new = F.normalize(torch.as_tensor(np.asarray(new_embeddings), dtype=torch.float32), dim=-1)
        groups: dict[tuple, list[int]] = {}
        for j, seq in enumerate(identifiers.sequences):
            groups.setdefault(seq[:-1], []).append(j)
        prefixes = list(groups)
        centroids = F.normalize(torch.stack([e_old[groups[p]].mean(0) for p in prefixes]), dim=-1)
        used = {p: len(v) for p, v in groups.items()}
        seqs = []
        for c in (e_new @ centroids.T).argmax(1).tolist():
            p = prefixes[c]
            seqs.append(p + (f"<s{used[p]}>",))
            used[p] += 1
    else:
        raise TigerError(f"cannot extend {kind!r} identifiers: use one of {', '.join(TYPES)}")
    return Identifiers(kind, identifiers.sequences + seqs, np.concatenate([identifiers.images, np.arange(n, n + m)]).astype(np.int64), n + m, identifiers.params)


_PSEUDO_QUERIES: dict[tuple, list[list[str]]] = {}  # one build writes them once for all five types


def gallery_pseudo_queries(lmm, dual_encoder, images, codes, config: GRACEConfig, seed: int = 0) -> list[list[str]]:
    """:func:`pseudo_queries` for a gallery, remembered for the other identifier types of the same build."""
    key = (id(lmm), id(dual_encoder), hash(np.asarray(codes).tobytes()), config.pseudo_queries, config.candidates, config.top_p, seed)
    if key not in _PSEUDO_QUERIES:
        _PSEUDO_QUERIES.clear()
        _PSEUDO_QUERIES[key] = pseudo_queries(lmm, codes, config.pseudo_queries, config.candidates, config.top_p, seed, dual_encoder, images)
    return _PSEUDO_QUERIES[key]


def train_for_zoo(world, config: GRACEConfig, seed: int, device="cpu", deps: dict | None = None) -> tuple[GRACE, dict]:
    """The zoo's GRACE model of one identifier type: memorize the world's gallery. Reads the
    gallery (images and, for semantic ids, captions) and never the world's queries."""
    deps = deps or {}
    missing = [d for d in ("lmm", "visual_tokenizer", "dual_encoder") if d not in deps]
    if missing:
        raise TigerError(f"GRACE needs the zoo's {', '.join(missing)}: build them first (`tiger zoo build`)")
    lmm, vq, de = deps["lmm"], deps["visual_tokenizer"], deps["dual_encoder"]
    gallery = world.gallery
    t0 = time.perf_counter()
    codes = vq.encode(gallery.images)
    embeddings = de.encode_images(gallery.images).cpu().numpy()
    queries = gallery_pseudo_queries(lmm, de, gallery.images, codes, config, seed)
    prep = time.perf_counter() - t0
    ids = gallery_identifiers(config.id_type, gallery, embeddings=embeddings, config=config, seed=seed)
    model, stats = train_grace(lmm, ids, codes, queries, config, seed, image_embeddings=embeddings)
    stats["prepare_seconds"] = round(prep, 1)
    stats["identifiers"] = ids.stats()
    stats.pop("loss_curve")
    return model, stats
