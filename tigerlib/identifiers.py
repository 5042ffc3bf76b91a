"""Image identifiers: what a language model generates to name a gallery image.

GRACE compares five kinds, TIGeR adds a sixth that comes for free:

- ``string``: the image index as one text string ("417"), split however the LM's tokenizer likes;
- ``numeric``: the index as separate digit tokens ("4 1 7");
- ``semantic``: a caption of the image; a hit is *any* caption of it (all captions are in the trie);
- ``structured``: hierarchical k-means over dual-encoder image embeddings (k clusters per level,
  split until a cluster holds at most ``leaf_size`` images; the last token is the position in it);
- ``atomic``: one new token per image (GRACE trains it as a classification head initialized from
  the image embeddings);
- ``visual``: the visual tokenizer's code sequence (TIGeR: no training needed).

Every kind maps identifier <-> image ids (several images may share one identifier: collisions are
counted, never dropped), gives its token sequences in a local vocabulary or in an LM tokenizer's,
and builds the prefix trie used for constrained decoding.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import TigerError

def words(text: str) -> tuple[str, ...]:
    """Lower-cased words and punctuation marks: the symbols of a semantic identifier."""
    return tuple(re.findall(r"[\w']+|[^\w\s]", text.lower()))


KINDS = ("string", "numeric", "semantic", "structured", "atomic", "visual")
END = "<end>"


@dataclass
class Identifiers:
    """Identifier sequences (tuples of symbols) and the image each one names.

    ``sequences[j]`` names image ``images[j]``; most kinds have one sequence per image, semantic
    ids have one per caption."""

    kind: str
    sequences: list[tuple[str, ...]]
    images: np.ndarray
    n_images: int
    params: dict = field(default_factory=dict)

    # -- lookup ---------------------------------------------------------------------------------
    def of_image(self, i: int) -> list[tuple[str, ...]]:
        return [self.sequences[j] for j in np.flatnonzero(self.images == i)]

    def images_of(self, identifier) -> np.ndarray:
        """Every image an identifier names (empty if none): a tuple of symbols, or its text."""
        if isinstance(identifier, str):
            text = identifier.strip()
            key = (text,) if self.kind == "string" else tuple(text.replace(" ", "")) if self.kind == "numeric" else words(text)
        else:
            key = tuple(identifier)
        if "_index" not in self.__dict__:
            index: dict[tuple, list[int]] = {}
            for s, i in zip(self.sequences, self.images.tolist()):
                index.setdefault(s, []).append(i)
            self.__dict__["_index"] = index
        return np.unique(np.asarray(self.__dict__["_index"].get(key, []), dtype=np.int64))

    # -- statistics -----------------------------------------------------------------------------
    def stats(self) -> dict:
        lengths = np.array([len(s) for s in self.sequences])
        groups: dict[tuple, set] = {}
        for s, i in zip(self.sequences, self.images.tolist()):
            groups.setdefault(s, set()).add(i)
        shared = {i for imgs in groups.values() if len(imgs) > 1 for i in imgs}
        return {
            "kind": self.kind,
            "identifiers": len(self.sequences),
            "images": self.n_images,
            "distinct": len(groups),
            "mean_length": round(float(lengths.mean()), 2),
            "max_length": int(lengths.max()),
            "vocabulary": len(self.vocabulary()),
            "images_in_collisions": len(shared),
        }

    def vocabulary(self) -> list[str]:
        return sorted({t for s in self.sequences for t in s})

    # -- tokens ---------------------------------------------------------------------------------
    def local_vocab(self) -> dict[str, int]:
        """A vocabulary of this identifier's own symbols (plus the end symbol)."""
        return {t: k for k, t in enumerate(self.vocabulary() + [END])}

    def token_sequences(self, tokenizer=None) -> list[list[int]]:
        """Each identifier as token ids: in the local vocabulary (``tokenizer=None``), in a dict
        symbol -> id, or in a Hugging Face tokenizer (text kinds are tokenized as text; symbolic
        kinds need their symbols added first with ``tokenizer.add_tokens(ids.vocabulary())``)."""
        if tokenizer is None or isinstance(tokenizer, dict):
            vocab = tokenizer if tokenizer is not None else self.local_vocab()
            missing = [t for t in self.vocabulary() if t not in vocab]
            if missing:
                raise TigerError(f"{len(missing)} identifier symbols are not in the vocabulary (first: {missing[0]!r}): add them to it")
            return [[vocab[t] for t in s] for s in self.sequences]
        if self.kind in ("string", "semantic"):
            return [tokenizer(" ".join(s), add_special_tokens=False)["input_ids"] for s in self.sequences]
        ids = tokenizer.convert_tokens_to_ids(self.vocabulary())
        vocab = dict(zip(self.vocabulary(), ids))
        unknown = [t for t, i in vocab.items() if i is None or i == tokenizer.unk_token_id]
        if unknown:
            raise TigerError(f"the tokenizer lacks {len(unknown)} identifier tokens (first: {unknown[0]!r}): call tokenizer.add_tokens(ids.vocabulary()) and resize the model's embeddings")
        return [[vocab[t] for t in s] for s in self.sequences]

    def trie(self, tokenizer=None, end_token: int | None = None):
        """The prefix trie over these identifiers (items = image ids). Variable-length kinds get
        an end token so that an identifier may be a prefix of another."""
        from .decoding.trie import TensorTrie

        seqs = self.token_sequences(tokenizer)
        if tokenizer is None:
            vocab = self.local_vocab()
            vocab_size, end_token = len(vocab), vocab[END] if end_token is None else end_token
        elif isinstance(tokenizer, dict):
            vocab_size = max(tokenizer.values()) + 1
        else:
            vocab_size = len(tokenizer)
            end_token = tokenizer.eos_token_id if end_token is None else end_token
        lengths = {len(s) for s in seqs}
        use_end = end_token if len(lengths) > 1 or self.kind in ("string", "semantic") else None
        return TensorTrie.build(seqs, vocab_size=max(vocab_size, (use_end or 0) + 1), item_ids=self.images, end_token=use_end)

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        from .storage import atomic_write_json

        atomic_write_json(Path(path), {"kind": self.kind, "n_images": self.n_images, "params": self.params, "sequences": [list(s) for s in self.sequences], "images": self.images.tolist()})

    @classmethod
    def load(cls, path: str | Path) -> "Identifiers":
        from .storage import read_json

        d = read_json(Path(path))
        if not d or d.get("kind") not in KINDS:
            raise TigerError(f"{path} is not a saved identifier file: rebuild it with build_identifiers(...).save(path)")
        return cls(d["kind"], [tuple(s) for s in d["sequences"]], np.asarray(d["images"], dtype=np.int64), d["n_images"], d.get("params", {}))


# -- builders ---------------------------------------------------------------------------------------


def build_identifiers(kind: str, gallery, *, dual_encoder=None, visual_tokenizer=None, embeddings=None, codes=None, k: int = 30, leaf_size: int = 30, seed: int = 0) -> Identifiers:
    """Build one kind of identifier for every image of ``gallery`` (a CaptionedImages).

    ``structured`` needs image embeddings (``embeddings`` or a ``dual_encoder``); ``visual`` needs
    codes (``codes`` or a ``visual_tokenizer``)."""
    if kind not in KINDS:
        raise TigerError(f"unknown identifier kind {kind!r}: use one of {KINDS}")
    n = len(gallery)
    if n == 0:
        raise TigerError("the gallery is empty: identifiers need at least one image")
    every = np.arange(n, dtype=np.int64)
    if kind == "string":
        return Identifiers(kind, [(str(i),) for i in range(n)], every, n)
    if kind == "numeric":
        width = len(str(n - 1))
        return Identifiers(kind, [tuple(str(i).zfill(width)) for i in range(n)], every, n, {"digits": width})
    if kind == "atomic":
        return Identifiers(kind, [(f"<id_{i}>",) for i in range(n)], every, n)
    if kind == "semantic":
        seqs, owners = [], []
        for i, caps in enumerate(gallery.captions):
            for c in caps or [""]:
                seqs.append(words(c))
                owners.append(i)
        return Identifiers(kind, seqs, np.asarray(owners, dtype=np.int64), n)
    if kind == "visual":
        if codes is None:
            if visual_tokenizer is None:
                raise TigerError("visual identifiers need codes: pass visual_tokenizer= or codes=")
            codes = visual_tokenizer.encode(gallery.load())
        codes = np.asarray(codes)
        if codes.ndim != 2 or len(codes) != n:
            raise TigerError(f"codes must have shape [{n}, L], got {codes.shape}")
        return Identifiers(kind, [tuple(f"<v{c}>" for c in row) for row in codes.tolist()], every, n, {"tokens_per_image": codes.shape[1]})
    # structured
    if embeddings is None:
        if dual_encoder is None:
            raise TigerError("structured identifiers need image embeddings: pass dual_encoder= or embeddings=")
        embeddings = dual_encoder.encode_images(gallery.load()).cpu().numpy()
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if k < 2 or leaf_size < 1:
        raise TigerError(f"structured identifiers need k >= 2 and leaf_size >= 1 (got k={k}, leaf_size={leaf_size})")
    seqs = hierarchical_kmeans(embeddings, k, leaf_size, seed)
    return Identifiers(kind, [tuple(f"<s{c}>" for c in s) for s in seqs], every, n, {"k": k, "leaf_size": leaf_size})


def hierarchical_kmeans(x: np.ndarray, k: int, leaf_size: int, seed: int = 0) -> list[list[int]]:
    """GRACE's structured ids: cluster into ``k`` groups, recurse into every group larger than
    ``leaf_size``; an item's id is its cluster path plus its position inside the final group."""
    from sklearn.cluster import KMeans

    out: list[list[int]] = [[] for _ in range(len(x))]

    def split(idx: np.ndarray, prefix: list[int], depth: int) -> None:
        if len(idx) <= leaf_size or depth > 32:
            base = max(k, leaf_size)  # position symbols reuse the cluster symbols
            for pos, i in enumerate(idx):
                out[i] = prefix + ([pos] if len(idx) <= base else list(divmod(pos, base)))
            return
        n_clusters = min(k, len(idx))
        labels = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed + depth).fit_predict(x[idx])
        if len(np.unique(labels)) == 1:  # identical embeddings cannot be split: number them
            split(idx, prefix, 33)
            return
        for c in range(n_clusters):
            members = idx[labels == c]
            if len(members):
                split(members, prefix + [c], depth + 1)

    split(np.arange(len(x)), [], 0)
    return out
