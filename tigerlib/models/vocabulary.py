"""Which words of a prompt a model knows: a model trained on the mini world has seen a few hundred
words; a prompt made of others (empty, "红色的圆", emoji, control characters, a made-up word) gets
a ranking or an image all the same, so every result carries the share of its words the model saw
in training, and the CLI and notebooks warn when it is zero."""
from __future__ import annotations

import re

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # runs of letters or digits in any script


def words(text) -> list[str]:
    """Lower-cased words of a text (punctuation, emoji and control characters are not words)."""
    return WORD.findall("" if text is None else str(text).lower())


def known_word_share(text, vocabulary: set[str] | frozenset[str] | None) -> float:
    """Share of the text's words in ``vocabulary`` (None: a pretrained model, any word counts);
    0.0 for a text with no words at all."""
    ws = words(text)
    if not ws:
        return 0.0
    if vocabulary is None:
        return 1.0
    return round(sum(w in vocabulary for w in ws) / len(ws), 4)


def known_word_shares(texts, vocabulary: set[str] | frozenset[str] | None) -> list[float]:
    """:func:`known_word_share` of one text (a one-item list) or of each text of a list."""
    return [known_word_share(t, vocabulary) for t in ([texts] if isinstance(texts, str) else texts)]


def vocabulary_of(texts) -> set[str]:
    """Every word of the given texts (what a model trained on them has seen)."""
    out: set[str] = set()
    for t in texts:
        out.update(words(t))
    return out


def unknown_prompt_warning(prompt: str, share: float) -> str | None:
    """The one warning line for a prompt the model does not understand, or None."""
    if share > 0:
        return None
    return f"warning: the model knows none of the words of {prompt!r}: the answer below is not based on the prompt (use words the model was trained on)"
