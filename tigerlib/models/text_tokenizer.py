"""The mini models' text tokenizers: byte-level BPE trained in-process on the world's text.

Byte-level BPE (the ``tokenizers`` library, GPT-2 style): the 256 byte symbols are always in the
vocabulary and merges learned from the world's captions, entity names and prompts make its words
short, so any text in any script tokenizes (a word never seen becomes its pieces or bytes, never
``<unk>``), and a new word made of known pieces ("reddish") shares tokens with them. Text is NFKC
normalized and lower-cased first. The unified LMM's tokenizer is wrapped as a transformers
``PreTrainedTokenizerFast`` so the rest of the ecosystem accepts it; the dual encoder uses the
same trainer (:func:`byte_bpe`) with its own special tokens.

Layout of the ids (fixed, so image tokens form one contiguous range):
``0..5`` the special tokens, ``6 .. 6+K-1`` the image tokens ``<img0>..<img{K-1}>``, then words.
"""
from __future__ import annotations

from pathlib import Path

SPECIAL_TOKENS = ("<pad>", "<bos>", "<eos>", "<unk>", "<boi>", "<eoi>")
IMAGE_OFFSET = len(SPECIAL_TOKENS)


def image_token(code: int) -> str:
    return f"<img{code}>"


def byte_bpe(texts, merges: int, special_tokens=()):
    """A byte-level BPE ``tokenizers.Tokenizer``: ids ``0..len(special_tokens)-1`` are the special
    tokens, then the 256 bytes, then at most ``merges`` merges learned from ``texts`` (pairs seen
    at least twice). Deterministic for the same texts."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)  # "red" at the start = " red" inside
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=len(special_tokens) + len(alphabet) + merges, special_tokens=list(special_tokens),
                                  initial_alphabet=alphabet, min_frequency=2, show_progress=False)
    tok.train_from_iterator(list(texts), trainer)
    return tok


def train_text_tokenizer(texts, codebook_size: int, merges: int = 512):
    """The LMM's ``PreTrainedTokenizerFast``: special tokens, one token per visual code, then a
    byte-level BPE over ``texts`` (see :func:`byte_bpe`)."""
    return wrap(byte_bpe(texts, merges, list(SPECIAL_TOKENS) + [image_token(c) for c in range(codebook_size)]))


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
