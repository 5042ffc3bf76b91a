"""A prefix trie over image identifiers, stored as a few flat tensors for constrained decoding.

TIGeR and GRACE retrieve an image by generating its identifier token by token; a prefix trie over
the gallery forbids every token that leads to no gallery item. Their released code keeps the trie
as nested Python dicts and asks it once per beam per step. Here the trie is flattened (as in
STATIC, "Vectorizing the Trie") so that one decoding step for all beams is a handful of tensor
gathers, on CPU or CUDA.

Layout (N nodes, E = N - 1 edges, nodes numbered in BFS order, root = 0):

- ``row_ptr[N + 1]``: the edges leaving node ``p`` are ``row_ptr[p] .. row_ptr[p + 1] - 1``.
  BFS order makes the children of a node contiguous, so edge ``e`` leads to node ``e + 1``:
  the child id needs no storage.
- ``tokens[E]``: the token on each edge, ascending within a node (binary search in ``step``).
- ``root_mask[V]``: the root's allowed tokens as a dense mask; the root has up to V children,
  far too many to scatter per beam.
- ``depth_start[D + 2]``: nodes of depth ``d`` are ``depth_start[d] .. depth_start[d + 1] - 1``.
- ``leaf_nodes[U]`` (ascending), ``leaf_ptr[U + 1]``, ``leaf_items[n]``: leaf -> item ids in CSR
  form; identical identifiers share one leaf and all their items.

With int32 row pointers and int16 tokens this is about 6.6 bytes per node for a gallery of
random 32-token identifiers (the dict trie needs about 250).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..config import info
from ..errors import TigerError

FORMAT = "tigerlib.TensorTrie"
FORMAT_VERSION = "1"
_ARRAYS = ("row_ptr", "tokens", "root_mask", "depth_start", "leaf_nodes", "leaf_ptr", "leaf_items")

TokenRows = torch.Tensor | np.ndarray | Sequence[Sequence[int]]


def _checksum(arrays: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """sha256 of the metadata (all but this checksum) and of each array's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    for name in _ARRAYS:
        a = np.ascontiguousarray(arrays[name].detach().cpu().numpy())
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def _as_padded(sequences: TokenRows) -> tuple[np.ndarray, np.ndarray]:
    """Any accepted input -> (tokens [n, L] int64 padded with -1, lengths [n] int64)."""
    if isinstance(sequences, torch.Tensor):
        sequences = sequences.detach().cpu().numpy()
    if isinstance(sequences, np.ndarray):
        if sequences.ndim != 2:
            raise TigerError(
                f"sequences must be 2-D [n_items, length], got shape {tuple(sequences.shape)}: "
                "wrap a single identifier as [ids]"
            )
        if not (np.issubdtype(sequences.dtype, np.integer) or sequences.size == 0):
            raise TigerError(f"sequences must hold integer token ids, got dtype {sequences.dtype}: cast with .long()")
        tokens = sequences.astype(np.int64, copy=False)
        return tokens, np.full(len(tokens), tokens.shape[1], dtype=np.int64)

    seqs = list(sequences)
    if seqs and isinstance(seqs[0], (int, np.integer)):
        raise TigerError("sequences must be a list of token lists, got a flat list: wrap a single identifier as [ids]")
    if seqs and isinstance(seqs[0], (torch.Tensor, np.ndarray)):
        seqs = [s.tolist() for s in seqs]
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    flat = np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum()))
    width = int(lengths.max()) if len(seqs) else 0
    tokens = np.full((len(seqs), width), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(seqs)), lengths)
    cols = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    tokens[rows, cols] = flat
    return tokens, lengths


def _lexsort_rows(tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """Order of the rows of ``tokens`` (pad -1 sorts first), packing several columns per sort key."""
    bits = int(vocab_size).bit_length()  # tokens are shifted by +1 so that pad -1 becomes 0
    per_key = max(1, 62 // bits)
    keys = []
    for start in range(0, tokens.shape[1], per_key):
        key = np.zeros(len(tokens), dtype=np.int64)
        for col in range(start, min(start + per_key, tokens.shape[1])):
            key = (key << bits) | (tokens[:, col] + 1)
        keys.append(key)
    if not keys:
        return np.arange(len(tokens))
    return np.lexsort(keys[::-1])  # lexsort's last key is the primary one


class TensorTrie:
    """Prefix trie over token sequences as flat CSR tensors; batch operations on node ids.

    A node id is an int64 index (root 0); ``-1`` means "no node" (a token left the trie).
    ``num_collisions`` counts items whose identifier duplicates another's; ``max_degree`` is the
    most children of any node. Build with :meth:`TensorTrie.build`, move with :meth:`to`, persist with :meth:`save` /
    :meth:`load`.
    """

    def __init__(self, row_ptr: torch.Tensor, tokens: torch.Tensor, root_mask: torch.Tensor,
                 depth_start: torch.Tensor, leaf_nodes: torch.Tensor, leaf_ptr: torch.Tensor,
                 leaf_items: torch.Tensor, vocab_size: int, end_token: int | None = None,
                 max_degree: int | None = None, num_collisions: int = 0):
        self.row_ptr, self.tokens, self.root_mask = row_ptr, tokens, root_mask
        self.depth_start, self.leaf_nodes, self.leaf_ptr, self.leaf_items = depth_start, leaf_nodes, leaf_ptr, leaf_items
        self.vocab_size, self.end_token, self.num_collisions = int(vocab_size), end_token, int(num_collisions)
        if max_degree is None:
            max_degree = int((row_ptr[1:] - row_ptr[:-1]).max()) if len(row_ptr) > 1 else 0
        self.max_degree = int(max_degree)

    # ------------------------------------------------------------------ build
    @classmethod
    def build(cls, sequences: TokenRows, vocab_size: int, item_ids: TokenRows | None = None,
              end_token: int | None = None) -> "TensorTrie":
        """Build the trie of ``sequences`` ([n, L] tensor/array or a list of int lists).

        ``item_ids[i]`` is the item that ``sequences[i]`` identifies (default ``i``). Identical
        sequences share a leaf (counted in ``num_collisions``). ``end_token``, when given, is
        appended to every sequence so that variable-length identifiers may be prefixes of each
        other. Vectorized: one lexicographic sort, then a loop over depth.
        """
        vocab_size = int(vocab_size)
        if vocab_size < 1 or vocab_size > 2**31 - 1:
            raise TigerError(f"vocab_size must be in [1, 2**31), got {vocab_size}")
        tokens, lengths = _as_padded(sequences)
        n = len(tokens)
        if n == 0:
            raise TigerError("cannot build a trie over an empty gallery: pass at least one identifier sequence")
        if item_ids is None:
            items = np.arange(n, dtype=np.int64)
        else:
            items = np.asarray(item_ids.cpu() if isinstance(item_ids, torch.Tensor) else item_ids).astype(np.int64).ravel()
            if len(items) != n:
                raise TigerError(f"item_ids has {len(items)} entries for {n} sequences: pass one item id per sequence")
        if end_token is not None:
            end_token = int(end_token)
            if not 0 <= end_token < vocab_size:
                raise TigerError(f"end_token {end_token} is outside the vocabulary [0, {vocab_size}): pick a token id below vocab_size")
            if (tokens == end_token).any():  # the end token must only ever close an identifier
                row = int(np.argmax((tokens == end_token).any(axis=1)))
                raise TigerError(
                    f"identifier {row} already contains end_token {end_token}: choose an end_token that no identifier uses"
                )
            tokens = np.concatenate([tokens, np.full((n, 1), -1, dtype=np.int64)], axis=1)
            tokens[np.arange(n), lengths] = end_token
            lengths = lengths + 1
        if (lengths == 0).any():
            raise TigerError(f"sequence {int(np.argmin(lengths))} is empty: give every item a non-empty identifier or pass end_token")
        inside = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
        bad = inside & ((tokens < 0) | (tokens >= vocab_size))
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise TigerError(
                f"token {int(tokens[row, col])} (sequence {row}, position {col}) is outside the vocabulary "
                f"[0, {vocab_size}): pass the identifier codebook size as vocab_size"
            )

        order = _lexsort_rows(tokens, vocab_size)
        tokens, lengths, items = tokens[order], lengths[order], items[order]
        depth = int(lengths.max())

        # lcp[i]: length of the common prefix of sorted sequences i-1 and i (lcp[0] = 0).
        lcp = np.zeros(n, dtype=np.int64)
        if n > 1:
            eq = tokens[1:] == tokens[:-1]
            first_diff = np.where(eq.all(axis=1), tokens.shape[1], eq.argmin(axis=1))
            shorter = np.minimum(lengths[1:], lengths[:-1])
            lcp[1:] = np.minimum(first_diff, shorter)
            is_prefix = (lcp[1:] == shorter) & (lengths[1:] != lengths[:-1])
            if is_prefix.any():
                i = int(np.argmax(is_prefix))
                short, long_ = tokens[i, : lengths[i]].tolist(), tokens[i + 1, : lengths[i + 1]].tolist()
                raise TigerError(
                    f"identifier {short[:8]}{'...' if len(short) > 8 else ''} is a strict prefix of identifier "
                    f"{long_[:8]}{'...' if len(long_) > 8 else ''}: pass end_token=<an unused token id> so every "
                    "identifier ends with it"
                )

        # Per depth d, sequence i starts a new node iff it is long enough and differs from its
        # predecessor within the first d tokens. Node ids follow (depth, sorted order) = BFS.
        degree_parts, token_parts, depth_start = [], [], [0, 1]
        leaf_of = np.empty(n, dtype=np.int64)
        prev_ids, prev_offset, prev_count, offset = np.zeros(n, dtype=np.int64), 0, 1, 1
        for d in range(1, depth + 1):
            new = (lengths >= d) & (lcp < d)
            count = int(new.sum())
            degree_parts.append(np.bincount(prev_ids[new] - prev_offset, minlength=prev_count))
            token_parts.append(tokens[new, d - 1])
            ids = offset - 1 + np.cumsum(new)
            ends = lengths == d
            leaf_of[ends] = ids[ends]
            prev_ids, prev_offset, prev_count = ids, offset, count
            offset += count
            depth_start.append(offset)
        degree_parts.append(np.zeros(prev_count, dtype=np.int64))
        num_nodes = offset

        index_dtype = np.int32 if num_nodes < 2**31 - 1 else np.int64
        token_dtype = np.int16 if vocab_size <= 2**15 else np.int32
        degrees = np.concatenate(degree_parts)
        row_ptr = np.zeros(num_nodes + 1, dtype=np.int64)
        np.cumsum(degrees, out=row_ptr[1:])
        edge_tokens = np.concatenate(token_parts).astype(token_dtype)
        root_mask = np.zeros(vocab_size, dtype=bool)
        root_mask[token_parts[0]] = True

        # Leaves: group the sorted items by leaf node (duplicates are already adjacent).
        perm = np.argsort(leaf_of, kind="stable")
        leaf_sorted = leaf_of[perm]
        starts = np.flatnonzero(np.r_[True, leaf_sorted[1:] != leaf_sorted[:-1]])
        leaf_ptr = np.r_[starts, n].astype(np.int64)
        num_collisions = n - len(starts)
        if num_collisions:
            shared = int((np.diff(leaf_ptr) > 1).sum())
            info(f"TensorTrie: {num_collisions} identifier(s) duplicate another; {shared} leaf/leaves hold several items")

        t = torch.from_numpy
        return cls(
            row_ptr=t(row_ptr.astype(index_dtype)), tokens=t(edge_tokens), root_mask=t(root_mask),
            depth_start=t(np.asarray(depth_start, dtype=np.int64)),
            leaf_nodes=t(leaf_sorted[starts].astype(index_dtype)), leaf_ptr=t(leaf_ptr),
            leaf_items=t(np.ascontiguousarray(items[perm])), vocab_size=vocab_size, end_token=end_token,
            max_degree=int(degrees.max()), num_collisions=num_collisions,
        )

    # ------------------------------------------------------------------ sizes
    @property
    def device(self) -> torch.device:
        return self.row_ptr.device

    @property
    def num_nodes(self) -> int:
        return len(self.row_ptr) - 1

    @property
    def num_leaves(self) -> int:
        """Distinct identifiers (leaves)."""
        return len(self.leaf_nodes)

    @property
    def num_items(self) -> int:
        return len(self.leaf_items)

    @property
    def depth(self) -> int:
        """Length of the longest identifier (end token included)."""
        return len(self.depth_start) - 2

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _ARRAYS)

    @property
    def bytes_per_node(self) -> float:
        return self.nbytes / self.num_nodes

    def __repr__(self) -> str:
        return (f"TensorTrie(items={self.num_items}, leaves={self.num_leaves}, nodes={self.num_nodes}, "
                f"depth={self.depth}, vocab={self.vocab_size}, {self.bytes_per_node:.1f} B/node, device={self.device})")

    def to(self, device: torch.device | str) -> "TensorTrie":
        """A copy of the trie on ``device`` (batch ops then run there)."""
        moved = {name: getattr(self, name).to(device) for name in _ARRAYS}
        return TensorTrie(**moved, vocab_size=self.vocab_size, end_token=self.end_token,
                          max_degree=self.max_degree, num_collisions=self.num_collisions)

    # ------------------------------------------------------------------ batch ops
    def _nodes(self, nodes: torch.Tensor | Sequence[int] | int) -> torch.Tensor:
        return torch.as_tensor(nodes, device=self.device).long().reshape(-1)

    def _edge_range(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(first edge, end edge) of each node; empty for ``-1``."""
        safe = nodes.clamp(min=0)
        lo, hi = self.row_ptr[safe].long(), self.row_ptr[safe + 1].long()
        return lo, torch.where(nodes >= 0, hi, lo)

    def degree(self, nodes: torch.Tensor) -> torch.Tensor:
        """Number of children of each node (0 for leaves and ``-1``)."""
        lo, hi = self._edge_range(self._nodes(nodes))
        return hi - lo

    def is_leaf(self, nodes: torch.Tensor) -> torch.Tensor:
        """True where the node exists and has no children (a complete identifier)."""
        nodes = self._nodes(nodes)
        return (nodes >= 0) & (self.degree(nodes) == 0)

    def step(self, nodes: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Child of ``nodes[b]`` along ``tokens[b]``, or -1 where there is none.

        A vectorized binary search over each node's sorted child tokens; it stops as soon as
        every range has converged (one round for the single-child nodes of deep levels).
        """
        nodes, tokens = self._nodes(nodes), self._nodes(tokens)
        lo, hi = self._edge_range(nodes)
        end, last = hi, max(len(self.tokens) - 1, 0)
        while True:  # lower bound: first edge in [lo, end) whose token is >= the wanted one
            active = lo < hi
            if not bool(active.any()):
                break
            mid = (lo + hi) // 2  # == lo == hi on converged rows, which then stay put
            go_right = active & (self.tokens[mid.clamp(max=last)] < tokens)
            lo, hi = torch.where(go_right, mid + 1, lo), torch.where(go_right, hi, mid)
        found = (lo < end) & (self.tokens[lo.clamp(max=last)] == tokens)  # tokens outside the vocab never match
        return torch.where(found, lo + 1, -1)

    def _expand(self, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Concatenate the index ranges [lo[b], hi[b]): (row b of each entry, the index, counts)."""
        counts = hi - lo
        total = int(counts.sum())
        rows = torch.repeat_interleave(torch.arange(len(lo), device=self.device), counts, output_size=total)
        flat = torch.arange(total, device=self.device) + (lo - (torch.cumsum(counts, 0) - counts))[rows]
        return rows, flat, counts

    def _children_flat(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All children of ``nodes`` as (row index, edge index, per-node counts)."""
        return self._expand(*self._edge_range(nodes))

    def allowed_mask(self, nodes: torch.Tensor) -> torch.Tensor:
        """BoolTensor[B, vocab]: tokens that keep each beam inside the trie (none for -1 / leaves)."""
        nodes = self._nodes(nodes)
        at_root = nodes == 0
        if bool(at_root.any()):  # the root's (many) children come from the dense mask
            mask = (at_root.to(torch.uint8)[:, None] * self.root_mask.to(torch.uint8)).view(torch.bool)  # fast on CPU
            nodes = torch.where(at_root, -1, nodes)
        else:
            mask = torch.zeros(len(nodes), self.vocab_size, dtype=torch.bool, device=self.device)
        rows, edges, _ = self._children_flat(nodes)
        mask[rows, self.tokens[edges].long()] = True
        return mask

    def allowed_tokens(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse form of :meth:`allowed_mask`: (token ids, offsets[B + 1]); node b's tokens are
        ``ids[offsets[b]:offsets[b + 1]]`` in ascending order."""
        _, edges, counts = self._children_flat(self._nodes(nodes))
        offsets = torch.zeros(len(counts) + 1, dtype=torch.long, device=self.device)
        torch.cumsum(counts, 0, out=offsets[1:])
        return self.tokens[edges].long(), offsets

    def mask_logits(self, logits: torch.Tensor, nodes: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        """Set disallowed logits to -inf. ``logits`` is [B, W] with W >= vocab_size; columns past
        the trie's vocabulary are always disallowed (identifier tokens are ids ``< vocab_size``)."""
        width = logits.shape[-1]
        if width < self.vocab_size:
            raise TigerError(f"logits have {width} columns but the trie's vocabulary has {self.vocab_size}: "
                             "build the trie with the model's token ids (vocab_size <= logits width)")
        blocked = ~self.allowed_mask(nodes).to(logits.device)
        if width > self.vocab_size:
            blocked = torch.nn.functional.pad(blocked, (0, width - self.vocab_size), value=True)
        if inplace:
            return logits.masked_fill_(blocked, float("-inf"))
        return logits.masked_fill(blocked, float("-inf"))

    def walk(self, prefix_tokens: torch.Tensor | Sequence[int] | Sequence[Sequence[int]]) -> int | torch.Tensor:
        """Node reached by a prefix (1-D -> int) or by each row of a [B, T] batch (-> LongTensor[B]);
        -1 where the prefix leaves the trie."""
        prefix = torch.as_tensor(prefix_tokens, dtype=torch.long, device=self.device)
        single = prefix.dim() == 1
        prefix = prefix.reshape(1, -1) if single else prefix
        nodes = torch.zeros(len(prefix), dtype=torch.long, device=self.device)
        for col in range(prefix.shape[1]):
            nodes = self.step(nodes, prefix[:, col])
        return int(nodes[0]) if single else nodes

    def node_depth(self, nodes: torch.Tensor) -> torch.Tensor:
        """Depth of each node (root 0); BFS numbering makes this a search in ``depth_start``."""
        return torch.searchsorted(self.depth_start, self._nodes(nodes), right=True) - 1

    def parent(self, nodes: torch.Tensor) -> torch.Tensor:
        """Parent of each non-root node: the owner of incoming edge ``node - 1``."""
        edges = self._nodes(nodes) - 1
        return torch.searchsorted(self.row_ptr, edges.to(self.row_ptr.dtype), right=True).long() - 1

    def paths(self, nodes: torch.Tensor) -> torch.Tensor:
        """LongTensor[B, depth]: the tokens from the root to each node, padded with -1."""
        nodes = self._nodes(nodes)
        out = torch.full((len(nodes), self.depth), -1, dtype=torch.long, device=self.device)
        cur, cur_depth = nodes.clone(), self.node_depth(nodes)
        for d in range(self.depth, 0, -1):  # climb: rows at depth d write column d-1, then move up
            sel = torch.nonzero(cur_depth == d).squeeze(1)
            if len(sel):
                out[sel, d - 1] = self.tokens[cur[sel] - 1].long()
                cur[sel] = self.parent(cur[sel])
                cur_depth[sel] -= 1
        return out

    def _leaf_index(self, leaf_nodes: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.leaf_nodes, self._nodes(leaf_nodes).to(self.leaf_nodes.dtype))

    def items_at(self, leaf_nodes: torch.Tensor) -> list[torch.Tensor]:
        """Item ids held by each leaf (several when identifiers collide)."""
        leaf_nodes = self._nodes(leaf_nodes)
        idx = self._leaf_index(leaf_nodes).clamp(max=max(self.num_leaves - 1, 0))
        if not bool((self.leaf_nodes[idx].long() == leaf_nodes).all()):
            raise TigerError("items_at() got a node that is not a leaf: use items_under(node) for inner nodes")
        lo, hi = self.leaf_ptr[idx].tolist(), self.leaf_ptr[idx + 1].tolist()
        return [self.leaf_items[a:b] for a, b in zip(lo, hi)]

    def _leaf_ranges_below(self, nodes: torch.Tensor):
        """Yield, level by level, the [first, end) leaf indices inside each node's subtree.

        The descendants of a contiguous node range at the next level are again one contiguous
        range, so a subtree is one range per level."""
        a = self._nodes(nodes)
        b = torch.where(a >= 0, a + 1, a)
        a = a.clamp(min=0)
        b = b.clamp(min=0)
        for _ in range(self.depth + 1):
            dt = self.leaf_nodes.dtype
            yield torch.searchsorted(self.leaf_nodes, a.to(dt)), torch.searchsorted(self.leaf_nodes, b.to(dt))
            if not bool((a < b).any()):
                break
            a, b = self.row_ptr[a].long() + 1, self.row_ptr[b].long() + 1

    def num_leaves_below(self, nodes: torch.Tensor) -> torch.Tensor:
        """Number of distinct identifiers in each node's subtree (1 = the path is already unique)."""
        total = torch.zeros(len(self._nodes(nodes)), dtype=torch.long, device=self.device)
        for first, end in self._leaf_ranges_below(nodes):
            total += end - first
        return total

    def num_items_below(self, nodes: torch.Tensor) -> torch.Tensor:
        """Number of items (duplicates counted) in each node's subtree."""
        total = torch.zeros(len(self._nodes(nodes)), dtype=torch.long, device=self.device)
        for first, end in self._leaf_ranges_below(nodes):
            total += self.leaf_ptr[end] - self.leaf_ptr[first]
        return total

    def _leaves_below(self, node: int) -> torch.Tensor:
        """Indices (into the leaf arrays) of the leaves in ``node``'s subtree, ascending."""
        parts = [torch.arange(int(f), int(e), device=self.device) for f, e in self._leaf_ranges_below(node) if e > f]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long, device=self.device)

    def leaves_below(self, node: int) -> torch.Tensor:
        """Leaf node ids in ``node``'s subtree (``node`` itself if it is a leaf)."""
        return self.leaf_nodes[self._leaves_below(node)].long()

    def items_under(self, node: int) -> torch.Tensor:
        """LongTensor of all item ids whose identifier starts with the path to ``node``."""
        leaves = self._leaves_below(node)
        if len(leaves) == 0:
            return torch.zeros(0, dtype=torch.long, device=self.device)
        _, flat, _ = self._expand(self.leaf_ptr[leaves], self.leaf_ptr[leaves + 1])
        return self.leaf_items[flat]

    def complete(self, node: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Every full identifier below ``node``: (sequences [k, depth] padded with -1, the item ids
        of each sequence). ``node = walk(prefix)`` completes a partial path."""
        if node < 0:
            return torch.zeros(0, self.depth, dtype=torch.long, device=self.device), []
        leaves = self.leaves_below(node)
        return self.paths(leaves), self.items_at(leaves)

    def follow_first(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Follow each node's first child down to a leaf: (tokens [B, m] padded -1, leaf nodes).

        For a node with a single leaf below (``num_leaves_below == 1``) this is its completion.
        """
        cur = self._nodes(nodes).clone()
        steps = []
        while True:
            lo, hi = self._edge_range(cur)
            more = hi > lo
            if not bool(more.any()):
                break
            steps.append(torch.where(more, self.tokens[lo.clamp(max=len(self.tokens) - 1)].long(), -1))
            cur = torch.where(more, lo + 1, cur)
        toks = torch.stack(steps, 1) if steps else torch.zeros(len(cur), 0, dtype=torch.long, device=self.device)
        return toks, cur

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> Path:
        """Write a safetensors file atomically (temp file + rename); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {name: getattr(self, name).detach().cpu().contiguous() for name in _ARRAYS}
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "vocab_size": str(self.vocab_size),
                "end_token": "" if self.end_token is None else str(self.end_token),
                "max_degree": str(self.max_degree), "num_collisions": str(self.num_collisions),
                "num_nodes": str(self.num_nodes), "num_items": str(self.num_items)}
        meta["sha256"] = _checksum(tensors, meta)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            save_file(tensors, str(tmp), metadata=meta)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "TensorTrie":
        """Read a trie written by :meth:`save`, checking its sha256 (files saved before the
        checksum existed load with a note)."""
        path = Path(path)
        rebuild = "rebuild it with TensorTrie.build(...).save(path)"
        if not path.is_file():
            raise TigerError(f"no trie file at {path}: build one with TensorTrie.build(...).save(path)")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT:
                    raise TigerError(f"{path} is not a TensorTrie file: {rebuild}")
                if meta.get("version") != FORMAT_VERSION:
                    raise TigerError(f"{path} has trie format version {meta.get('version')}, this library reads "
                                     f"{FORMAT_VERSION}: {rebuild}")
                arrays = {name: f.get_tensor(name) for name in _ARRAYS}
        except SafetensorError as e:
            raise TigerError(f"{path} is damaged ({e}): {rebuild}") from e
        if "sha256" not in meta:
            info(f"{path} was saved without a checksum; save it again to add one")
        elif _checksum(arrays, meta) != meta["sha256"]:
            raise TigerError(f"{path} does not match its recorded sha256 (corrupted or altered): {rebuild}")
        arrays = {name: a.to(device) for name, a in arrays.items()}
        end = meta.get("end_token", "")
        return cls(**arrays, vocab_size=int(meta["vocab_size"]), end_token=int(end) if end else None,
                   max_degree=int(meta["max_degree"]), num_collisions=int(meta["num_collisions"]))
