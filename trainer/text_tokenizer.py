"""The text tokenizer of a VITA-Audio style speech LLM: a Qwen2.5-style BPE plus speech tokens.

Upstream (``vita_audio/tokenizer_glm4voice.py``, ``update_tokenizer_for_glm4voice``)
extends the Qwen2.5 tokenizer at load time with 20 special tokens (`SPECIAL_TOKENS`)
and then with the 16384 GLM-4-Voice code tokens ``<|audio_0|>`` … ``<|audio_16383|>``
as *normal* (non-special) added tokens, so they get contiguous ids right after the
specials (151685 … 168068 on Qwen2.5's 151665-token vocabulary). `extend_tokenizer`
does the same, idempotently; `SpeechVocab` holds the ids a trainer needs.

`train_demo_text_tokenizer` builds a small stand-in (byte-level BPE on a release's
transcripts, Qwen-style specials and ChatML template) for smoke runs without a
Qwen2.5 download; `load_text_tokenizer` reads either kind; `tokenizer_sha256` is the
content hash recorded in run lineage.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

# Registers `qwen2_mctp` with transformers: AutoTokenizer reads a checkpoint folder's
# config.json, and our exported checkpoints carry their tokenizer.
import trainer.model  # noqa: F401
from schemas.hashing import folder_sha256
from schemas.prompts import AUDIO_TAG

# The 20 tokens upstream's `update_tokenizer_for_glm4voice` adds as special tokens, in its
# order. The audio names and the order are upstream's code; the strings of the
# image/video/patch/quad/ref/box tokens are those of upstream's `vita_audio/constants.py`
# (read in a vendored copy), which follow the same `<|begin_of_X|>` pattern.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|begin_of_image|>",
    "<|end_of_image|>",
    "<|context_of_image|>",
    "<|begin_of_video|>",
    "<|end_of_video|>",
    "<|context_of_video|>",
    "<|begin_of_patch|>",
    "<|end_of_patch|>",
    "<|context_of_patch|>",
    "<|begin_of_audio|>",
    "<|end_of_audio|>",
    "<|begin_of_quad|>",
    "<|end_of_quad|>",
    "<|begin_of_ref|>",
    "<|end_of_ref|>",
    "<|begin_of_box|>",
    "<|end_of_box|>",
    "<|image|>",
    "<|video|>",
    "<|audio|>",
)
"""Upstream's added special tokens, in upstream's order.

Confirmed in upstream's code (``tokenizer_glm4voice.py``, ``dataset_qwen2.py`` and the
inference scripts): ``<|begin_of_audio|>``, ``<|end_of_audio|>``, ``<|audio|>`` and the
order of all 20. The other 17 strings follow the same pattern
(``<|begin_of_X|>``, ``<|end_of_X|>``, ``<|context_of_X|>``, ``<|image|>``,
``<|video|>``), as in upstream's ``constants.py``. Note that ``<|context_of_audio|>``
exists in upstream's constants but is *not* added by upstream, so it is not here.
"""

NUM_AUDIO_TOKENS = 16384
"""GLM-4-Voice codebook size: one text-vocabulary token per speech code."""

BEGIN_OF_AUDIO = "<|begin_of_audio|>"
END_OF_AUDIO = "<|end_of_audio|>"
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (ENDOFTEXT, IM_START, IM_END)
"""The Qwen2.5 specials the demo tokenizer has, in Qwen2.5's order (ids 0, 1, 2 in the demo)."""

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML without a default system prompt (Qwen2.5's template injects one)."""

# Qwen2's pre-tokenizer split (tokenizer.json of Qwen2.5): contractions, letter runs,
# single digits, punctuation runs, newlines, spaces. Byte-level BPE runs inside each piece.
QWEN2_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DEMO_MARKER_FILE = "voxlake_demo_tokenizer.json"
MIN_DEMO_VOCAB_SIZE = 256 + len(QWEN_SPECIAL_TOKENS)


def audio_token(code: int) -> str:
    """The token string of GLM-4-Voice code `code`: ``<|audio_123|>``."""
    return f"<|audio_{code}|>"


def _audio_token_ids(tokenizer: PreTrainedTokenizerFast) -> list[int | None]:
    """Id of every ``<|audio_i|>`` in the tokenizer, None where absent."""
    vocab = tokenizer.get_vocab()
    return [vocab.get(audio_token(i)) for i in range(NUM_AUDIO_TOKENS)]


def _check_contiguous(ids: Sequence[int | None], where: str) -> int:
    """The id of ``<|audio_0|>`` if all audio ids exist and are contiguous; ValueError if not."""
    missing = [i for i, token_id in enumerate(ids) if token_id is None]
    if missing:
        raise ValueError(
            f"{where}: {len(missing)} of {NUM_AUDIO_TOKENS} audio tokens are missing "
            f"(first: {audio_token(missing[0])})"
        )
    offset = ids[0]
    assert offset is not None
    for code, token_id in enumerate(ids):
        if token_id != offset + code:
            raise ValueError(
                f"{where}: audio token ids are not contiguous: {audio_token(code)} has id "
                f"{token_id}, expected {offset + code}"
            )
    return offset


def extend_tokenizer(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Add upstream's 20 special tokens and the 16384 audio tokens, as upstream does; in place.

    The specials go in as special tokens, the ``<|audio_i|>`` as normal added tokens
    (upstream: ``add_tokens(..., special_tokens=False)``), so decoding with
    ``skip_special_tokens=True`` keeps them. Idempotent: tokens already present are kept
    at their ids. ValueError if some but not all audio tokens exist, or if they exist at
    ids that are not contiguous (``<|audio_i|>`` must be ``<|audio_0|>`` + i).
    """
    tokenizer.add_tokens(list(SPECIAL_TOKENS), special_tokens=True)
    present = _audio_token_ids(tokenizer)
    if any(token_id is not None for token_id in present):
        _check_contiguous(present, "tokenizer already has audio tokens")
        return tokenizer
    tokenizer.add_tokens([audio_token(i) for i in range(NUM_AUDIO_TOKENS)], special_tokens=False)
    _check_contiguous(_audio_token_ids(tokenizer), "after adding the audio tokens")
    return tokenizer


@dataclass(frozen=True)
class SpeechVocab:
    """The token ids a speech LLM trainer needs, read from an extended tokenizer.

    Attributes:
        audio_offset: id of ``<|audio_0|>``; code c has id ``audio_offset + c``.
        num_audio_tokens: 16384.
        begin_of_audio / end_of_audio / audio_tag: ids of ``<|begin_of_audio|>``,
            ``<|end_of_audio|>``, ``<|audio|>``.
        im_start / im_end: ids of ``<|im_start|>``, ``<|im_end|>``.
        pad: id of ``<|endoftext|>`` (Qwen2.5's pad token).
        vocab_size: ``len(tokenizer)``, added tokens included (the embedding rows needed).
    """

    audio_offset: int
    num_audio_tokens: int
    begin_of_audio: int
    end_of_audio: int
    audio_tag: int
    im_start: int
    im_end: int
    pad: int
    vocab_size: int

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerFast) -> SpeechVocab:
        """Read the ids; ValueError naming every missing token, or non-contiguous audio ids."""
        vocab = tokenizer.get_vocab()
        needed = (BEGIN_OF_AUDIO, END_OF_AUDIO, AUDIO_TAG, IM_START, IM_END, ENDOFTEXT)
        missing = [token for token in needed if token not in vocab]
        if missing:
            raise ValueError(
                f"the tokenizer lacks {', '.join(missing)} (extend_tokenizer adds the speech "
                "tokens; the chat tokens must come from a Qwen2.5-style tokenizer)"
            )
        ids = [vocab.get(audio_token(i)) for i in range(NUM_AUDIO_TOKENS)]
        offset = _check_contiguous(ids, "the tokenizer's audio tokens")
        return cls(
            audio_offset=offset,
            num_audio_tokens=NUM_AUDIO_TOKENS,
            begin_of_audio=vocab[BEGIN_OF_AUDIO],
            end_of_audio=vocab[END_OF_AUDIO],
            audio_tag=vocab[AUDIO_TAG],
            im_start=vocab[IM_START],
            im_end=vocab[IM_END],
            pad=vocab[ENDOFTEXT],
            vocab_size=len(tokenizer),
        )

    def audio_ids(self, codes: Sequence[int] | np.ndarray) -> list[int]:
        """Token ids of GLM-4-Voice codes; ValueError for a code outside [0, 16384)."""
        array = np.asarray(codes, dtype=np.int64).reshape(-1)
        if array.size and (array.min() < 0 or array.max() >= self.num_audio_tokens):
            raise ValueError(
                f"speech codes must lie in [0, {self.num_audio_tokens}), got "
                f"[{array.min()}, {array.max()}]"
            )
        return (array + self.audio_offset).tolist()

    def is_audio(self, token_id: int) -> bool:
        """Whether `token_id` is one of the 16384 ``<|audio_i|>`` tokens."""
        return self.audio_offset <= token_id < self.audio_offset + self.num_audio_tokens


def _demo_backend(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained on `texts` with Qwen2's normaliser and pre-tokenizer split."""
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        # Every byte is in the alphabet, so any UTF-8 text (Mandarin included) encodes.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    return backend


class _HashingTexts:
    """Iterates over texts once while counting them and hashing their UTF-8 bytes."""

    def __init__(self, texts: Iterable[str]) -> None:
        self._texts = texts
        self.count = 0
        self.sha256 = hashlib.sha256()

    def __iter__(self) -> Iterator[str]:
        for text in self._texts:
            self.count += 1
            self.sha256.update(text.encode("utf-8") + b"\0")
            yield text


def train_demo_text_tokenizer(
    texts: Iterable[str],
    out_dir: Path,
    vocab_size: int = 1000,
    *,
    trained_on: str = "a release's transcripts",
) -> Path:
    """Train a small demo text tokenizer on `texts` and save it (Hugging Face format) in `out_dir`.

    Byte-level BPE (every UTF-8 text encodes, English and Mandarin alike) with Qwen2's
    NFC normaliser and pre-tokenizer split, the Qwen specials ``<|endoftext|>`` (pad),
    ``<|im_start|>``, ``<|im_end|>`` (eos) at ids 0, 1, 2, a ChatML chat template without
    default system prompt, then `extend_tokenizer`'s speech tokens. `vocab_size` bounds
    the BPE vocabulary (specials included, at least 259); a small corpus may give fewer.

    Writes ``tokenizer.json``, ``tokenizer_config.json``, ``chat_template.jinja``, a
    ``README.md`` and ``voxlake_demo_tokenizer.json`` (marker: demo, what it was trained
    on, how many texts, their sha256). The same texts give byte-identical files.
    Returns `out_dir`.
    """
    if vocab_size < MIN_DEMO_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {MIN_DEMO_VOCAB_SIZE}, got {vocab_size}")
    hashed = _HashingTexts(texts)
    backend = _demo_backend(hashed, vocab_size)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token=IM_END, pad_token=ENDOFTEXT
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    extend_tokenizer(tokenizer)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out_dir))
    marker = {
        "demo": True,
        "trained_on": trained_on,
        "n_texts": hashed.count,
        "texts_sha256": hashed.sha256.hexdigest(),
        "bpe_vocab_size": backend.get_vocab_size(with_added_tokens=False),
        "vocab_size": len(tokenizer),
        "audio_offset": SpeechVocab.from_tokenizer(tokenizer).audio_offset,
    }
    (out_dir / DEMO_MARKER_FILE).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
    (out_dir / "README.md").write_text(
        "# Demo text tokenizer (not Qwen2.5)\n\n"
        f"A byte-level BPE of {marker['bpe_vocab_size']} tokens trained by voxlake on "
        f"{trained_on} ({hashed.count} texts), with the Qwen specials `<|endoftext|>`, "
        "`<|im_start|>`, `<|im_end|>`, a ChatML chat template, upstream VITA-Audio's 20 "
        "special tokens and the 16384 GLM-4-Voice tokens `<|audio_0|>`…`<|audio_16383|>`.\n\n"
        "It exists for smoke runs of the training code; train real models with the "
        "Qwen2.5 tokenizer of the base checkpoint.\n"
    )
    return out_dir


def load_text_tokenizer(path: Path) -> tuple[PreTrainedTokenizerFast, SpeechVocab]:
    """Load a tokenizer folder (a user's Qwen2.5 one or a demo one) and its `SpeechVocab`.

    A tokenizer without the audio tokens is extended in memory, as upstream does at load
    time. FileNotFoundError / ValueError naming `path` when the folder is missing or is
    not a (fast) Hugging Face tokenizer.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no tokenizer folder at {path}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path} is not a Hugging Face tokenizer folder: {error}") from error
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ValueError(f"{path}: need a fast tokenizer (tokenizer.json), got {type(tokenizer)}")
    if audio_token(0) not in tokenizer.get_vocab():
        extend_tokenizer(tokenizer)
    try:
        vocab = SpeechVocab.from_tokenizer(tokenizer)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    return tokenizer, vocab


def text_tokenizer_sha256(path: Path) -> str:
    """Content hash of a tokenizer folder (`schemas.hashing.folder_sha256`)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no tokenizer folder at {path}")
    return folder_sha256(path)
