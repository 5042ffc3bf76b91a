"""The unified LMM's tokenizer: words, special tokens and one token per visual code.

A word-level vocabulary trained in-process with the ``tokenizers`` library on the world's
captions, entity names and the instruction prompts, wrapped as a transformers
``PreTrainedTokenizerFast`` so the rest of the ecosystem accepts it. Text is lower-cased and split
into words and punctuation; an unknown word becomes ``<unk>``, never an error.

Layout of the ids (fixed, so image tokens form one contiguous range):
``0..5`` the special tokens, ``6 .. 6+K-1`` the image tokens ``<img0>..<img{K-1}>``, then words.
"""
from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>", "<boi>", "<eoi>")
IMAGE_OFFSET = len(SPECIAL_TOKENS)


def image_token(code: int) -> str:
    return f"<img{code}>"


def train_text_tokenizer(texts, codebook_size: int):
    """A word-level ``PreTrainedTokenizerFast`` over ``texts`` plus the special and image tokens.

    Deterministic: the trainer orders words by count, ties alphabetically."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words (\w+) and runs of punctuation
    specials = list(SPECIAL_TOKENS) + [image_token(c) for c in range(codebook_size)]
    tok.train_from_iterator(list(texts), trainers.WordLevelTrainer(special_tokens=specials, min_frequency=1, show_progress=False))
    return wrap(tok)


def wrap(tok):
    """A ``tokenizers.Tokenizer`` as a transformers tokenizer with our special tokens named."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        additional_special_tokens=["<boi>", "<eoi>"],
    )
    check_layout(fast)
    return fast


def check_layout(fast) -> int:
    """Check the fixed id layout; return the number of image tokens."""
    from ..errors import TigerError

    vocab = fast.get_vocab()
    for i, t in enumerate(SPECIAL_TOKENS):
        if vocab.get(t) != i:
            raise TigerError(f"LMM tokenizer has {t} at id {vocab.get(t)}, expected {i}: rebuild the lmm (`tiger zoo build`)")
    k = 0
    while vocab.get(image_token(k)) == IMAGE_OFFSET + k:
        k += 1
    return k


def save_text_tokenizer(fast, folder: Path) -> Path:
    path = Path(folder) / "tokenizer.json"
    fast.backend_tokenizer.save(str(path))
    return path


def load_text_tokenizer(folder: Path):
    from tokenizers import Tokenizer

    from ..errors import TigerError

    path = Path(folder) / "tokenizer.json"
    if not path.exists():
        raise TigerError(f"no tokenizer.json in {folder}: rebuild the lmm (`tiger zoo build`)")
    return wrap(Tokenizer.from_file(str(path)))
