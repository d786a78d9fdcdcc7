"""The fast path: GLM-4-Voice codes for many utterances, batched by window length.

`GLM4VoiceTokenizer.tokenize` cuts every utterance into upstream's 30 s
windows, computes each window's log-mel alone (as upstream would for a batch
of one), sorts all windows of the call by length, longest first, and runs
them in batches of at most `max_batch_frames` padded log-mel frames. Inside a
batch, windows of one length class (the same multiple of 0.4 s) form a group
that attends within itself; the row-wise products of all groups run together
(`WhisperVQEncoder.forward_groups`). Only codes under each window's mask are
kept, and each utterance's windows are concatenated in order. The codes
equal, bit for bit, those of `reference.reference_tokenize` over the same
encoder (one window at a time): see `model.py` on why batching cannot change
them.

Upstream instead batches 128 windows in arrival order, each padded to the
longest of its batch; `bench/bench_tokenizer.py` measures what sorting saves.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from inference.glm4voice.config import GLM4VoiceTokenizerConfig
from inference.glm4voice.features import (
    WINDOW_SAMPLES,
    expected_code_count,
    samples_per_code,
    split_windows,
    window_features,
)
from inference.glm4voice.model import WhisperVQEncoder, padded_feature_frames

# Padded log-mel frames (100 per second) per batch, by device type: a 30 s window is 3000.
# Large enough that the last product call's padding (< rows_per_call rows) stays small.
DEFAULT_MAX_BATCH_FRAMES = {"cpu": 48_000, "cuda": 96_000}


@dataclass(frozen=True)
class TokenizeStats:
    """What one `tokenize` call did. Frames are encoder frames (50 per second).

    `useful_frames`: frames of audio, ⌈samples / 320⌉ per window;
    `computed_frames`: rows the encoder's layers ran, padding included: each
    window's padded length, summed over a batch and rounded up to whole
    product calls (`rows_per_call`), summed over batches.
    """

    utterances: int
    windows: int
    batches: int
    audio_s: float
    useful_frames: int
    computed_frames: int
    wall_s: float

    @property
    def padding_overhead(self) -> float:
        """computed_frames / useful_frames (1.0 = no padding at all)."""
        return self.computed_frames / self.useful_frames if self.useful_frames else 1.0

    @property
    def real_time_factor(self) -> float:
        """Seconds of audio per second of wall time."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else float("inf")


def window_feature_frames(n_samples: int, samples_per_code: int, hop_samples: int) -> int:
    """Log-mel frames of a window of `n_samples`: padded to whole codes, one frame per hop."""
    return -(-n_samples // samples_per_code) * samples_per_code // hop_samples


def plan_batches(
    feature_frames: Sequence[int], max_batch_frames: int, length_quantum_frames: int
) -> list[list[int]]:
    """Group windows into batches: indices into `feature_frames`, longest windows first.

    Windows are sorted by their padded length (`padded_feature_frames`, a
    multiple of 2·quantum), then by length, then by index (deterministic), and
    cut into consecutive batches whose padded lengths add up to at most
    `max_batch_frames` (a window longer than that runs alone).
    """
    padded = [padded_feature_frames(f, length_quantum_frames) for f in feature_frames]
    order = sorted(range(len(padded)), key=lambda i: (-padded[i], -feature_frames[i], i))
    batches: list[list[int]] = []
    used = 0
    for index in order:
        if batches and used + padded[index] <= max_batch_frames:
            batches[-1].append(index)
            used += padded[index]
        else:
            batches.append([index])
            used = padded[index]
    return batches


def length_groups(feature_frames: Sequence[int], batch: Sequence[int],
                  length_quantum_frames: int) -> list[list[int]]:
    """The windows of a batch split by padded length class, in batch order."""
    groups: dict[int, list[int]] = {}
    for index in batch:
        groups.setdefault(padded_feature_frames(feature_frames[index], length_quantum_frames),
                          []).append(index)
    return list(groups.values())


def _as_mono_float32(audio: np.ndarray, index: int) -> np.ndarray:
    samples = np.asarray(audio)
    if samples.ndim != 1:
        raise ValueError(f"utterance {index}: expected mono samples (1-D), got shape "
                         f"{samples.shape}")
    if not np.issubdtype(samples.dtype, np.floating):
        raise ValueError(f"utterance {index}: expected float samples in [-1, 1], got "
                         f"{samples.dtype}")
    samples = samples.astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        raise ValueError(f"utterance {index}: holds NaN or infinite samples")
    return samples


class GLM4VoiceTokenizer:
    """A loaded GLM-4-Voice tokenizer: 16 kHz mono audio → uint16 codes, 12.5 per second.

    Build it with `load_tokenizer(directory)`. `checkpoint_sha256` identifies
    the checkpoint's content (see `loading.checkpoint_sha256`); `is_demo` is
    True for voxlake's random-weight demo checkpoint, whose codes mean nothing.
    """

    def __init__(
        self,
        model: WhisperVQEncoder,
        extractor: WhisperFeatureExtractor,
        *,
        directory: Path,
        checkpoint_sha256: str,
        max_batch_frames: int | None = None,
    ) -> None:
        self.model = model
        self.extractor = extractor
        self.config: GLM4VoiceTokenizerConfig = model.config
        self.directory = Path(directory)
        self.checkpoint_sha256 = checkpoint_sha256
        device_type = self.device.type
        self.max_batch_frames = max_batch_frames or DEFAULT_MAX_BATCH_FRAMES.get(
            device_type, DEFAULT_MAX_BATCH_FRAMES["cpu"]
        )
        self.samples_per_code = samples_per_code(extractor, self.config)
        self.window_samples = int(extractor.n_samples) if extractor.n_samples else WINDOW_SAMPLES
        self.last_stats: TokenizeStats | None = None

    @property
    def device(self) -> torch.device:
        """Where the encoder runs."""
        return self.model.conv1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The encoder's floating-point type (float32 unless half precision was asked for)."""
        return self.model.conv1.weight.dtype

    @property
    def is_demo(self) -> bool:
        """True for the random-weight demo checkpoint (`voxlake_demo` in config.json)."""
        return self.config.is_demo

    @property
    def codes_per_second(self) -> float:
        """Codes per second of 16 kHz audio (12.5 for the released checkpoint)."""
        return self.extractor.sampling_rate / self.samples_per_code

    def expected_code_count(self, n_samples: int) -> int:
        """Codes `tokenize` yields for `n_samples` samples (`features.expected_code_count`)."""
        return expected_code_count(n_samples, window_samples=self.window_samples,
                                   samples_per_code=self.samples_per_code)

    def tokenize(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Codes of each utterance: 16 kHz mono float samples → uint16 array, one per utterance.

        An utterance of n samples gets `expected_code_count(n)` codes (0 for
        empty audio). Raises ValueError for audio that is not 1-D float or
        holds NaN/inf. Statistics of the call are left in `last_stats`.
        """
        started = time.perf_counter()
        hop = int(self.extractor.hop_length)
        spc = self.samples_per_code
        windows: list[tuple[int, int, np.ndarray]] = []  # (utterance, window, samples)
        per_utterance = []
        for u, audio in enumerate(audios):
            parts = split_windows(_as_mono_float32(audio, u), self.window_samples)
            per_utterance.append(len(parts))
            windows.extend((u, w, part) for w, part in enumerate(parts))
        frames = [window_feature_frames(len(part), spc, hop) for _, _, part in windows]
        quantum = self.model.length_quantum_frames
        batches = plan_batches(frames, self.max_batch_frames, quantum)
        results: list[list[np.ndarray | None]] = [[None] * n for n in per_utterance]
        computed = 0
        per_call = self.model.rows_per_call
        with torch.inference_mode():
            for batch in batches:
                rows = sum(padded_feature_frames(frames[i], quantum) // 2 for i in batch)
                computed += rows if per_call is None else -(-rows // per_call) * per_call
                groups = length_groups(frames, batch, quantum)
                outputs = self._run_batch([[windows[i][2] for i in group] for group in groups])
                for group, group_codes in zip(groups, outputs, strict=True):
                    for position, codes in zip(group, group_codes, strict=True):
                        u, w, _ = windows[position]
                        results[u][w] = codes
        out = []
        for parts in results:
            assert all(p is not None for p in parts)
            out.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16))
        self.last_stats = TokenizeStats(
            utterances=len(out),
            windows=len(windows),
            batches=len(batches),
            audio_s=sum(len(part) for _, _, part in windows) / self.extractor.sampling_rate,
            useful_frames=sum(-(-len(part) // (hop * 2)) for _, _, part in windows),
            computed_frames=computed,
            wall_s=time.perf_counter() - started,
        )
        return out

    def _run_batch(self, groups: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
        """Codes of one batch: windows in groups of one length class each."""
        spc = self.samples_per_code
        inputs = []
        for parts in groups:
            computed = [window_features(self.extractor, part, spc) for part in parts]
            longest = max(features.shape[-1] for features, _ in computed)
            features = torch.zeros(len(parts), self.config.num_mel_bins, longest)
            frame_mask = torch.zeros(len(parts), longest, dtype=torch.long)
            for row, (part_features, part_mask) in enumerate(computed):
                features[row, :, : part_features.shape[-1]] = part_features
                frame_mask[row, : part_mask.shape[-1]] = part_mask
            inputs.append((features, frame_mask))
        out = []
        for parts, output in zip(groups, self.model.forward_groups(inputs), strict=True):
            ids = output.token_ids.cpu()
            valid = output.token_valid.cpu()
            codes = []
            for row, part in enumerate(parts):
                kept = ids[row][valid[row]]
                expected = -(-len(part) // spc)
                if kept.numel() != expected:
                    raise RuntimeError(
                        f"a window of {len(part)} samples gave {kept.numel()} codes, expected "
                        f"{expected}: the feature mask and the encoder disagree"
                    )
                codes.append(kept.numpy().astype(np.uint16))
            out.append(codes)
        return out
