"""Retrieve or generate: the unified system the course builds towards.

A *backend* proposes two answers to a prompt, the best gallery image (retrieval) and a new image
(generation); a *rule* scores both and picks one.

Backends:

- ``tiger``: the unified LMM retrieves (trie-constrained beam search + reverse re-ranking) and
  generates (image tokens sampled at top-p 0.5, decoded by the visual tokenizer);
- ``gill``: GILL's retrieval head retrieves, its mapper + the diffusion model generate;
- ``agent``: the paper's baseline, two separate tools: dense retrieval and direct diffusion.

Rules (TIGeR's two likelihood scores, GILL's classifier, and that classifier with a gallery check):

- ``forward``: PMI of each image's visual tokens, log p(Y|X) - eta log p(Y), as TIGeR's released code;
- ``reverse``: log p(X|Y), the prompt's likelihood given each image, TIGeR's best setting;
- ``classifier``: a logistic regression on GILL's [IMG0] hidden state of the prompt, trained on
  gold labels (knowledge -> retrieve, creative -> generate) of training prompts;
- ``classifier+gallery``: the classifier, or the gallery already holds the scene (the dual
  encoder's best cosine over the gallery above a threshold learned from training prompts). The
  classifier reads only the prompt, so it cannot know which scenes a gallery happens to hold.

The likelihood rules score any image through the zoo's LMM (images from a backend without visual
tokens are tokenized first); ties go to retrieval, a real image.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TigerError
from ..models.vocabulary import unknown_prompt_warning
from .dense import DenseRetriever
from .retriever import check_prompts
from .tiger import TIGeR

BACKENDS = ("tiger", "gill", "agent")
RULES = ("forward", "reverse", "classifier", "classifier+gallery")
DECISIONS = ("retrieve", "generate")
MAX_PROMPT_CHARS = 400  # longer prompts are cut (and the answer says so): every model here has a short context


@dataclass
class Candidate:
    """One proposed answer: an image [S, S, 3] uint8, its gallery index if retrieved, and its
    visual tokens when the backend has them."""

    image: np.ndarray
    index: int | None = None
    codes: torch.Tensor | None = None


@dataclass
class Answer:
    """What :func:`answer` returns: both candidates, the rule's scores, the decision, the seconds."""

    prompt: str
    backend: str
    rule: str
    retrieved: Candidate | None
    generated: Candidate | None
    scores: dict[str, float]  # {"retrieved": s, "generated": s}; empty when nothing was judged
    score_name: str
    decision: str  # "retrieve" or "generate"
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # fallbacks and warnings, one line each

    @property
    def chosen(self) -> Candidate:
        return self.retrieved if self.decision == "retrieve" else self.generated

    def to_json(self) -> dict:
        """The answer object of ``tiger demo --json`` (images left out)."""
        return {"prompt": self.prompt, "backend": self.backend, "rule": self.rule,
                "retrieved": None if self.retrieved is None else {"index": self.retrieved.index},
                "generated": self.generated is not None, "scores": {k: round(float(v), 4) for k, v in self.scores.items()},
                "score_name": self.score_name, "decision": self.decision, "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "notes": self.notes}


# -- backends --------------------------------------------------------------------------------------


class Backend:
    """A retriever over a gallery plus a generator. Either may be missing (None): the system then
    answers with the other and says so."""

    def __init__(self, name: str, retriever=None, gallery_images=None, generate=None, codes_of_index=None, **retrieve_options):
        if retriever is None and generate is None:
            raise TigerError(f"backend {name!r} has neither a gallery nor a generator: give it images or build a generator (`tiger zoo build`)")
        self.name, self.retriever, self.gallery_images = name, retriever, gallery_images
        self._generate, self._codes_of_index = generate, codes_of_index
        self.retrieve_options = retrieve_options

    @property
    def can_retrieve(self) -> bool:
        return self.retriever is not None

    @property
    def can_generate(self) -> bool:
        return self._generate is not None

    def retrieve_many(self, prompts: list[str]) -> list[Candidate | None]:
        """Each prompt's top-1 gallery image (None for all when there is no gallery)."""
        if self.retriever is None:
            return [None] * len(prompts)
        out = []
        for ranking in self.retriever.retrieve(list(prompts), k=1, **self.retrieve_options):
            top = ranking.top1
            codes = self._codes_of_index(top) if self._codes_of_index is not None and top >= 0 else None
            out.append(Candidate(np.asarray(self.gallery_images[top]), top, codes) if top >= 0 else None)
        return out

    def generate_many(self, prompts: list[str], seed: int = 0) -> list[Candidate | None]:
        """A new image for each prompt, in one batch (None for all when there is no generator)."""
        if self._generate is None:
            return [None] * len(prompts)
        images, codes = self._generate(list(prompts), seed)
        return [Candidate(np.asarray(images[i]), None, None if codes is None else codes[i]) for i in range(len(prompts))]

    def retrieve(self, prompt: str) -> Candidate | None:
        return self.retrieve_many([prompt])[0]

    def generate(self, prompt: str, seed: int = 0) -> Candidate | None:
        return self.generate_many([prompt], seed)[0]


def _has_images(gallery_images) -> bool:
    return gallery_images is not None and len(gallery_images) > 0


def tiger_backend(lmm, visual_tokenizer, gallery_images, num_beams: int = 100, top_p: float = 0.5) -> Backend:
    """TIGeR: one LMM retrieves (beam search + re-ranking) and generates (sampled visual tokens)."""

    def generate(prompts, seed):
        codes = lmm.sample_images(prompts, top_p=top_p, seed=seed)
        return visual_tokenizer.decode(codes), codes

    tiger = TIGeR.from_images(lmm, visual_tokenizer, gallery_images) if _has_images(gallery_images) else None
    return Backend("tiger", tiger, gallery_images, generate, None if tiger is None else (lambda i: tiger.codes[i]), num_beams=num_beams)


def gill_backend(gill, gallery_images) -> Backend:
    """GILL: the retrieval head ranks the gallery; the mapper conditions the diffusion model."""
    retriever = gill.retriever(gallery_images) if _has_images(gallery_images) else None
    return Backend("gill", retriever, gallery_images, lambda ps, seed: (gill.generate(ps, seed=seed, progress=False), None))


def agent_backend(dual_encoder, diffusion, gallery_images) -> Backend:
    """The agent baseline: dense retrieval and direct text-to-image diffusion, two separate tools."""
    dense = DenseRetriever(dual_encoder, gallery_images) if _has_images(gallery_images) else None
    generate = None if diffusion is None else (lambda ps, seed: (diffusion(ps, seed=seed, progress=False).images, None))
    return Backend("agent", dense, gallery_images, generate)


# -- rules -----------------------------------------------------------------------------------------


class LikelihoodRule:
    """TIGeR's decision: the zoo's LMM scores both images' visual tokens against the prompt."""

    def __init__(self, lmm, visual_tokenizer, direction: str = "reverse", eta: float = 1.0):
        if direction not in ("forward", "reverse"):
            raise TigerError(f"unknown likelihood direction {direction!r}: use 'forward' or 'reverse'")
        self.lmm, self.visual_tokenizer, self.direction, self.eta = lmm, visual_tokenizer, direction, float(eta)
        self.name = direction
        self.score_name = "PMI log p(Y|X) - eta log p(Y)" if direction == "forward" else "log p(X|Y)"

    def known_word_shares(self, prompts: list[str]) -> list[float]:
        return list(self.lmm.known_word_share(list(prompts)))

    def codes(self, candidates: list[Candidate]) -> torch.Tensor:
        """Visual tokens of each candidate [n, L]: the backend's own, else the images tokenized."""
        missing = [i for i, c in enumerate(candidates) if c.codes is None]
        encoded = self.visual_tokenizer.encode(np.stack([candidates[i].image for i in missing])) if missing else None
        rows = {i: encoded[j] for j, i in enumerate(missing)}
        return torch.stack([rows[i] if i in rows else c.codes for i, c in enumerate(candidates)])

    def scores(self, prompts: list[str], retrieved: list[Candidate], generated: list[Candidate]) -> np.ndarray:
        """[n, 2]: the score of (retrieved, generated) for each prompt."""
        codes, texts = self.codes(list(retrieved) + list(generated)), list(prompts) * 2
        if self.direction == "reverse":
            s = self.lmm.logp_text_given_image(codes, texts)
        else:
            s = self.lmm.logp_image_given_text(texts, codes) - self.eta * self.lmm.logp_image_null(codes)
        return s.view(2, len(prompts)).T.float().numpy()


class DecisionClassifier(nn.Module):
    """GILL's retrieve-or-generate classifier: logistic regression on the [IMG0] hidden state."""

    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, 1)
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """p(retrieve) for each [IMG0] state [n, width]."""
        return torch.sigmoid(self.linear((states - self.mean) / self.std).squeeze(-1))


def train_decision_classifier(gill, prompts: list[str], labels, steps: int = 300, lr: float = 0.05, penalty: float = 1.0, seed: int = 0) -> tuple[DecisionClassifier, dict]:
    """Fit :class:`DecisionClassifier` on (prompt, label) pairs, label "retrieve" or "generate"
    (GILL trained its classifier on annotated PartiPrompts; here the gold labels of the mini world).
    Prompts labelled "either" (common scenes) are skipped: either answer is right for them.
    ``penalty``: the ridge term penalty * |w|^2 / (2 n) of logistic regression (scikit-learn's default
    is 1). A few dozen prompts in the world's language are separable with room to spare; without
    the term the weights grow until p is 0 or 1 and the classifier keys on surface words. On the
    zoo's GILL (50 + 50 training prompts; the bench's 50 + 50 evaluation prompts rewritten in the
    world's held-out language) knowledge prompts went 0.68 -> 1.0 retrieved, creative 0.98 -> 1.0
    generated; in-language stays 1.0 / 1.0."""
    prompts, labels = _check_labels(prompts, labels)
    keep = [i for i, v in enumerate(labels) if v in DECISIONS]
    prompts, y = [prompts[i] for i in keep], torch.tensor([labels[i] == "retrieve" for i in keep], dtype=torch.float32)
    if len(set(y.tolist())) < 2:
        raise TigerError("the classifier needs prompts of both labels (retrieve and generate) to learn from")
    states = gill.img_states(prompts)[:, 0].float()
    torch.manual_seed(seed)
    clf = DecisionClassifier(states.shape[1])
    clf.mean.copy_(states.mean(0))
    clf.std.copy_(states.std(0).clamp_min(1e-4))
    opt = torch.optim.Adam(clf.linear.parameters(), lr=lr)
    for _ in range(steps):
        loss = F.binary_cross_entropy(clf(states).clamp(1e-6, 1 - 1e-6), y) + penalty * clf.linear.weight.pow(2).sum() / (2 * len(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        accuracy = float(((clf(states) > 0.5).float() == y).float().mean())
    return clf.eval(), {"train_accuracy": round(accuracy, 4), "final_loss": round(float(loss.detach()), 4), "n": len(y)}


def _check_labels(prompts, labels) -> tuple[list[str], list[str]]:
    prompts, labels = list(prompts), [str(v) for v in labels]
    if len(prompts) != len(labels) or not set(labels) <= {*DECISIONS, "either"}:
        raise TigerError(f"need one label per prompt, each one of {(*DECISIONS, 'either')}; got {len(prompts)} prompts and labels {sorted(set(labels))[:5]}")
    return prompts, labels


class GalleryCheck:
    """Does the gallery already hold what the prompt asks for? The dual encoder's best cosine
    between the prompt and any image of the gallery it was built on (not the candidate a backend
    retrieved), against a threshold learned from labelled prompts."""

    def __init__(self, dense: DenseRetriever, threshold: float):
        if not np.isfinite(threshold):
            raise TigerError(f"gallery check threshold {threshold}: use a finite cosine (fit_gallery_check learns one)")
        self.dense, self.threshold = dense, float(threshold)

    def best_cosine(self, prompts) -> np.ndarray:
        texts, _ = check_prompts(prompts)
        with torch.no_grad():
            return self.dense.scores(texts).max(1).values.double().cpu().numpy()

    def holds(self, prompts: list[str]) -> np.ndarray:
        return self.best_cosine(prompts) >= self.threshold


def fit_gallery_check(dual_encoder, gallery_images, prompts: list[str], labels) -> tuple[GalleryCheck, dict]:
    """The threshold on the best gallery cosine that best separates, on training prompts, those
    whose answer the gallery holds (labels retrieve, or either: a real image wins a tie) from
    those that need a new image (generate); the middle cut of the longest run of best cuts."""
    prompts, labels = _check_labels(prompts, labels)
    y = np.array([v != "generate" for v in labels])
    if len(set(y.tolist())) < 2:
        raise TigerError("the gallery check needs prompts the gallery answers (labels retrieve or either: common scenes) and prompts it does not (generate)")
    if not _has_images(gallery_images):
        raise TigerError("the gallery is empty: there is nothing to check prompts against")
    check = GalleryCheck(DenseRetriever(dual_encoder, gallery_images), 0.0)
    cos = check.best_cosine(prompts)
    values = np.unique(cos)
    cuts = np.concatenate([[values[0] - 1e-6], (values[1:] + values[:-1]) / 2, [values[-1] + 1e-6]])
    accuracy = np.array([np.mean((cos >= t) == y) for t in cuts])
    best = np.flatnonzero(accuracy == accuracy.max())
    longest = max(np.split(best, np.flatnonzero(np.diff(best) > 1) + 1), key=len)  # cuts in one run classify alike
    chosen = int(longest[len(longest) // 2])
    check.threshold = float(cuts[chosen])
    return check, {"threshold": round(check.threshold, 4), "train_accuracy": round(float(accuracy[chosen]), 4), "n": len(y)}


class ClassifierRule:
    """GILL's decision: the classifier reads only the prompt; its p(retrieve) is the score."""

    name, score_name = "classifier", "p(retrieve | [IMG0] state)"

    def __init__(self, gill, classifier: DecisionClassifier):
        self.gill, self.classifier = gill, classifier

    def known_word_shares(self, prompts: list[str]) -> list[float]:
        return [1.0] * len(prompts)  # a pretrained LLM reads any words

    def p_retrieve(self, prompts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.classifier(self.gill.img_states(prompts)[:, 0].float())

    def scores(self, prompts: list[str], retrieved=None, generated=None) -> np.ndarray:
        """[n, 2]: (p(retrieve), 1 - p(retrieve)) per prompt; the candidates are not looked at."""
        p = self.p_retrieve(list(prompts)).float().numpy()
        return np.stack([p, 1.0 - p], axis=1)


class ClassifierGalleryRule(ClassifierRule):
    """GILL's classifier, or the gallery check: retrieve when the prompt names something only a
    gallery holds, or when the gallery holds the asked scene (either answer is right there, and a
    real image wins a tie). The score is the larger of p(retrieve) and a soft gallery check; a
    prompt without a word the dual encoder knows is left to the classifier."""

    name, score_name = "classifier+gallery", "max(p(retrieve | [IMG0]), p(the gallery holds it))"

    def __init__(self, gill, classifier: DecisionClassifier, check: GalleryCheck, temperature: float = 0.01):
        super().__init__(gill, classifier)
        self.check, self.temperature = check, float(temperature)

    def scores(self, prompts: list[str], retrieved=None, generated=None) -> np.ndarray:
        texts, _ = check_prompts(prompts)
        p = self.p_retrieve(texts).double().numpy()
        z = np.clip((self.check.best_cosine(texts) - self.check.threshold) / self.temperature, -50.0, 50.0)
        held = 1.0 / (1.0 + np.exp(-z))
        held[np.array(self.check.dense.known_word_shares(texts)) == 0] = 0.0  # the dual encoder cannot read it: no check
        q = np.maximum(p, held)
        return np.stack([q, 1.0 - q], axis=1)


def fit_classifier_rules(gill, dual_encoder, gallery_images, prompts: list[str], labels, seed: int = 0) -> tuple[dict, dict]:
    """Both learned rules from one set of labelled training prompts: ``classifier`` (trained on the
    retrieve and generate prompts) and ``classifier+gallery`` (its gallery check fitted on the
    scene prompts, generate and either: the prompts the classifier leaves to it). Returns
    ({name: rule}, {name: training stats}); when the check cannot be fitted (an empty gallery, no
    "either" prompts) only ``classifier`` comes back and the stats say why."""
    prompts, labels = _check_labels(prompts, labels)
    clf, clf_stats = train_decision_classifier(gill, prompts, labels, seed=seed)
    rules, stats = {"classifier": ClassifierRule(gill, clf)}, {"classifier": clf_stats}
    scenes = [i for i, v in enumerate(labels) if v != "retrieve"]
    try:
        check, stats["gallery_check"] = fit_gallery_check(dual_encoder, gallery_images, [prompts[i] for i in scenes], [labels[i] for i in scenes])
        rules["classifier+gallery"] = ClassifierGalleryRule(gill, clf, check)
    except TigerError as e:
        stats["gallery_check"] = {"skipped": str(e)}
    return rules, stats


def retrieval_wins(scores: np.ndarray) -> np.ndarray:
    """Scores [n, 2] of (retrieved, generated) -> bool [n]: the higher score wins; a tie goes to
    retrieval (a real image)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 2)
    return scores[:, 0] >= scores[:, 1]


def choose(rule, prompts: list[str], retrieved: list[Candidate], generated: list[Candidate]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores [n, 2], retrieve [n] bool, readable [n] bool): a prompt the rule cannot read (no
    known word) falls back to generation. One definition for :func:`answer` and the benchmark."""
    readable = np.array(rule.known_word_shares(list(prompts))) > 0
    scores = rule.scores(list(prompts), retrieved, generated)
    return scores, retrieval_wins(scores) & readable, readable


# -- the answer ------------------------------------------------------------------------------------


def check_prompt(prompt) -> tuple[str, list[str]]:
    """(the prompt to use, notes): an empty prompt is an error; an overlong one is cut."""
    text = "" if prompt is None else str(prompt)
    if not text.strip():
        raise TigerError("the prompt is empty: describe the image you want, for example 'a red circle on a blue background'")
    if len(text) > MAX_PROMPT_CHARS:
        return text[:MAX_PROMPT_CHARS], [f"the prompt was cut to its first {MAX_PROMPT_CHARS} characters (it had {len(text)})"]
    return text, []


def answer(prompt: str, backend: Backend, rule, seed: int = 0) -> Answer:
    """Retrieve and generate for one prompt, then let ``rule`` choose. Fallbacks (said in
    ``notes``): no gallery -> generation only; no generator -> retrieval only; a prompt without
    one known word cannot be judged -> generation (a new image at least follows the prompt's form)."""
    if not isinstance(backend, Backend):
        raise TigerError(f"backend must be a Backend (one of {BACKENDS}, see make_backend), got {type(backend).__name__}")
    text, notes = check_prompt(prompt)
    t0 = time.perf_counter()
    retrieved = backend.retrieve(text)
    t1 = time.perf_counter()
    generated = backend.generate(text, seed)
    t2 = time.perf_counter()
    scores: dict[str, float] = {}
    if retrieved is None or generated is None:
        decision = "generate" if retrieved is None else "retrieve"
        notes.append("the gallery is empty or missing: generation only" if retrieved is None else "no generator is available: retrieval only")
    else:
        pair, wins, readable = choose(rule, [text], [retrieved], [generated])
        decision = "retrieve" if wins[0] else "generate"
        if readable[0]:
            scores = {"retrieved": float(pair[0, 0]), "generated": float(pair[0, 1])}
        else:
            notes += [unknown_prompt_warning(text, 0.0), f"cannot judge this prompt ({rule.name} needs known words): fell back to generation"]
    t3 = time.perf_counter()
    return Answer(text, backend.name, rule.name, retrieved, generated, scores, rule.score_name, decision,
                  {"retrieve": t1 - t0, "generate": t2 - t1, "decide": t3 - t2, "total": t3 - t0}, notes)


def make_rule(rule: str, zoo: dict, classifier: DecisionClassifier | None = None, eta: float = 1.0, gallery_check: GalleryCheck | None = None):
    """The rule named ``rule`` from loaded zoo models (``lmm`` and ``visual_tokenizer`` for the
    likelihood rules; ``gill`` and a trained classifier for ``classifier``, and a fitted gallery
    check for ``classifier+gallery``)."""
    if rule not in RULES:
        raise TigerError(f"unknown rule {rule!r}: use one of {', '.join(RULES)}")
    if rule.startswith("classifier"):
        if zoo.get("gill") is None or classifier is None:
            raise TigerError(f"the {rule} rule needs GILL and a trained decision classifier: `tiger zoo build`, then fit_classifier_rules")
        if rule == "classifier+gallery":
            if gallery_check is None:
                raise TigerError("the classifier+gallery rule needs a gallery check: fit both learned rules with fit_classifier_rules(gill, dual_encoder, gallery_images, prompts, labels)")
            return ClassifierGalleryRule(zoo["gill"], classifier, gallery_check)
        return ClassifierRule(zoo["gill"], classifier)
    return LikelihoodRule(zoo["lmm"], zoo["visual_tokenizer"], rule, eta)


def make_backend(backend: str, zoo: dict, gallery_images, num_beams: int = 100) -> Backend:
    """The backend named ``backend`` over ``gallery_images`` from loaded zoo models."""
    if backend not in BACKENDS:
        raise TigerError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    need = {"tiger": ("lmm", "visual_tokenizer"), "gill": ("gill",), "agent": ("dual_encoder", "diffusion")}[backend]
    missing = [n for n in need if zoo.get(n) is None]
    if missing:
        raise TigerError(f"the {backend} backend needs {', '.join(missing)}: build it with `tiger zoo build`")
    if backend == "tiger":
        return tiger_backend(zoo["lmm"], zoo["visual_tokenizer"], gallery_images, num_beams)
    if backend == "gill":
        return gill_backend(zoo["gill"], gallery_images)
    return agent_backend(zoo["dual_encoder"], zoo["diffusion"], gallery_images)
