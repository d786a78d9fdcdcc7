"""The work the measures share over one utterance, done once: `Signal`.

Every measure reads a few aggregates of the samples: their sum (DC), the energy
of each 10 ms block (STNR frame powers, 20 ms silence frames, RMS), the
magnitudes (peak, clipping, WADA-SNR's statistic) and the long-term spectrum.
`Signal` computes them lazily, each in one pass over the audio in chunks of
32 K to 128 K samples converted into a reused float64 buffer, so the audio is
never copied whole and the arithmetic runs in cache;
`quality.measures.measure` then touches the audio about three times instead of
once or more per measure. The individual measure functions (`quality.levels`,
`quality.snr`, `quality.spectrum`) build a `Signal` of their own and give
exactly what `measure` gives.

Samples come in one of two forms:

- `Signal.of_floats(x, rate)`: mono floats on the full-scale range [-1, 1]
  (`scale` = 1);
- `Signal.of_pcm16(pcm, rate)`: 16-bit PCM integers k, the audio k / 32768 as
  the shards store it (`scale` = 32768). Sums and energies are then exact
  (integers far below 2^53 in float64), and every measure equals the same
  measure of `of_floats(pcm / 32768)` up to float rounding (~1e-12 relative).

Values stay in their own units (k for PCM) and `scale` is divided out where a
level is reported, so a full-scale sine reads -3.01 dBFS either way.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np

PCM16_SCALE = 32768.0
BLOCK_S = 0.010
"""Energy blocks are round(10 ms x rate) samples: the STNR hop, half a silence frame."""
CHUNK_SAMPLES = 131072
"""About this many samples are converted and analysed at a time in the first pass (a
multiple of the block): fastest here among 16 K ... 512 K."""
FFT_CHUNK_SAMPLES = 32768
"""... and in the spectrum's pass (a multiple of the segment): 64 segments at 16 kHz, whose
input and spectra stay in a 512 KB cache."""
_PCM_LOG_LEVELS = 6
"""2^6 = 64 PCM magnitudes (1 ... 32768) per product: at most 2^960, a finite float64."""
_FLOAT_LOG_LEVELS = 4
"""2^4 = 16 normalised magnitudes (1e-10 ... 1) per product: at least 1e-160."""


class Signal:
    """One mono utterance and the aggregates its measures share (computed once, on demand)."""

    def __init__(self, samples: np.ndarray, scale: float, sample_rate_hz: int) -> None:
        # `samples` is 1-D, int16 or float, finite; never modified.
        self.samples = samples
        self.scale = scale
        self.sample_rate_hz = sample_rate_hz
        self.n = int(samples.size)

    @classmethod
    def of_floats(cls, samples: np.ndarray, sample_rate_hz: int) -> Signal:
        """Float samples on [-1, 1] (float32 or float64; finite)."""
        samples = np.asarray(samples)
        if samples.dtype not in (np.float32, np.float64):
            samples = samples.astype(np.float64)
        return cls(samples.reshape(-1), 1.0, sample_rate_hz)

    @classmethod
    def of_pcm16(cls, pcm: np.ndarray, sample_rate_hz: int) -> Signal:
        """16-bit PCM (int16) samples k, standing for the audio k / 32768."""
        pcm = np.asarray(pcm)
        if pcm.dtype != np.int16:
            raise TypeError(f"expected int16 PCM, got {pcm.dtype}")
        return cls(pcm.reshape(-1), PCM16_SCALE, sample_rate_hz)

    def chunks(self, multiple: int, dtype: type = np.float64):
        """(start, values) for consecutive chunks of the samples converted to `dtype`.

        Every chunk but the last is a whole number of `multiple`-sample pieces; the
        values are a view of one buffer reused from chunk to chunk.
        """
        size = multiple * max(1, CHUNK_SAMPLES // multiple)
        buffer = np.empty(min(size, self.n), dtype=dtype)
        for start in range(0, self.n, size):
            part = self.samples[start : start + size]
            values = buffer[: part.size]
            values[...] = part
            yield start, values

    # --- the first pass: sums, block energies, magnitudes -----------------------------------

    @cached_property
    def block(self) -> int:
        """Samples per energy block: round(10 ms x rate), at least 1."""
        return max(1, round(BLOCK_S * self.sample_rate_hz))

    @cached_property
    def peak(self) -> float:
        """max |samples| (0.0 for no samples)."""
        if self.n == 0:
            return 0.0
        return float(max(-float(self.samples.min()), float(self.samples.max())))

    @cached_property
    def _sums(self) -> dict[str, float | int | np.ndarray]:
        """One pass: total, block energies, the energy after the last block, and the
        magnitude statistics of WADA-SNR (see `log_magnitude_stats`)."""
        block = self.block
        energies = np.empty(self.n // block)
        total: float = 0.0
        rest_energy = sum_magnitude = sum_log = 0.0
        nonzero = 0
        peak = self.peak
        pcm = self.samples.dtype == np.int16
        scratch = _ProductScratch()
        for start, values in self.chunks(block):
            whole = values.size // block * block
            blocks = values[:whole].reshape(-1, block)
            np.einsum("ij,ij->i", blocks, blocks, out=energies[start // block :][: blocks.shape[0]])
            if whole < values.size:
                tail = values[whole:]
                rest_energy = float(np.dot(tail, tail))
            if pcm:  # the integers themselves: exact, and a quarter of the bytes to read
                original = self.samples[start : start + values.size]
                total += int(original.sum(dtype=np.int64))
                nonzero += int(np.count_nonzero(original))
            else:
                total += float(values.sum())
                nonzero += int(np.count_nonzero(values))
            if peak == 0.0:
                continue
            np.abs(values, out=values)
            if pcm:
                # |k| >= 1 never reaches the floor (|k| / peak >= 1 / 32768): the logs are
                # of the integers (zeros made 1, whose log is 0), normalised at the end.
                sum_magnitude += float(values.sum())
                np.maximum(values, 1.0, out=values)
                sum_log += scratch.sum_log(values, _PCM_LOG_LEVELS)
            else:
                values /= peak
                np.maximum(values, _WADA_FLOOR, out=values)  # zeros become the floor too
                sum_magnitude += float(values.sum())
                sum_log += scratch.sum_log(values, _FLOAT_LOG_LEVELS)
        zeros = self.n - nonzero
        if pcm and nonzero:
            mean_normalised = sum_magnitude / peak / nonzero
            mean_log = sum_log / nonzero - math.log(peak)
        elif nonzero:
            # Over the non-zero samples: take the zeros' floor values back out.
            mean_normalised = (sum_magnitude - zeros * _WADA_FLOOR) / nonzero
            mean_log = (sum_log - zeros * math.log(_WADA_FLOOR)) / nonzero
        else:
            mean_normalised = mean_log = 0.0
        return {
            "total": float(total),
            "energies": energies,
            "rest_energy": rest_energy,
            "nonzero": nonzero,
            "mean_normalised": mean_normalised,
            "mean_log": mean_log,
        }

    @property
    def total(self) -> float:
        """Sum of the samples (exact for PCM)."""
        return self._sums["total"]  # type: ignore[return-value]

    @property
    def block_energies(self) -> np.ndarray:
        """Sum of squares of each whole `block` (float64; a trailing partial block is left out)."""
        return self._sums["energies"]  # type: ignore[return-value]

    @property
    def sum_squares(self) -> float:
        """Sum of squares of every sample: the blocks and the partial block after them."""
        return float(self.block_energies.sum()) + self._sums["rest_energy"]  # type: ignore[operator]

    def energy(self, start: int, stop: int) -> float:
        """Sum of squares of samples[start:stop]."""
        part = self.samples[start:stop].astype(np.float64)
        return float(np.dot(part, part))

    def frame_energies(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """(energy, length) of consecutive `frame`-sample frames, the last one possibly shorter.

        Built from the block energies when a frame is two blocks (20 ms frames at any
        rate where round(20 ms x rate) = 2 round(10 ms x rate)), else summed directly.
        """
        n, whole = self.n, self.n // frame
        blocks = self.block_energies
        paired = frame == 2 * self.block
        if paired:
            energy = blocks[: 2 * whole].reshape(-1, 2).sum(axis=1)
        else:
            energy = np.empty(whole)
            for start, values in self.chunks(frame):
                count = values.size // frame
                frames = values[: count * frame].reshape(-1, frame)
                np.einsum("ij,ij->i", frames, frames, out=energy[start // frame :][:count])
        lengths = np.full(whole, frame, dtype=np.int64)
        if n % frame:
            start = whole * frame
            if paired and 2 * whole < blocks.size:
                tail = float(blocks[2 * whole]) + self.energy(start + self.block, n)
            else:
                tail = self.energy(start, n)
            energy = np.append(energy, tail)
            lengths = np.append(lengths, n - start)
        return energy, lengths

    def log_magnitude_stats(self) -> tuple[int, float, float] | None:
        """(non-zero count, mean of max(|v| / peak, 1e-10), mean of ln max(|v| / peak, 1e-10)),
        both over the non-zero samples; None when every sample is zero.

        The logarithms are taken of products of magnitudes (64 integers for PCM, 16
        normalised floats in [1e-10, 1] otherwise, so that a product stays a normal
        float64): one log per 64 or 16 samples, accurate to ~1e-15 per sample. (For
        PCM the floor is never reached: |k| / peak >= 1 / 32768.)
        """
        sums = self._sums
        nonzero = sums["nonzero"]
        if not nonzero:
            return None
        return nonzero, sums["mean_normalised"], sums["mean_log"]  # type: ignore[return-value]

    def clipped(self, level: float) -> np.ndarray:
        """Mask of the samples with |v| >= level."""
        return np.abs(self.samples.astype(np.float64)) >= level

    # --- the second pass: the spectrum ------------------------------------------------------

    def centred_chunks(self, segment: int, mean: float):
        """Chunks of whole `segment`s as float64 with `mean` subtracted (the FFT's input),
        converted and centred in one pass into a reused buffer."""
        size = segment * max(1, FFT_CHUNK_SAMPLES // segment)
        buffer = np.empty(min(size, self.n))
        for start in range(0, self.n, size):
            part = self.samples[start : start + size]
            values = buffer[: part.size]
            np.subtract(part, mean, out=values, dtype=np.float64)
            yield start, values


_WADA_FLOOR = 1e-10
"""Kim & Stern floor |z| / peak at 1e-10 so that ln|z| stays finite."""


class _ProductScratch:
    """Two reused buffers for `sum_log`'s pairwise products."""

    def __init__(self) -> None:
        self._buffers = (np.empty(0), np.empty(0))

    def sum_log(self, values: np.ndarray, levels: int) -> float:
        """Sum of ln(values): products of 2^levels consecutive values (pairwise, `levels`
        rounds), then one log per product, and the logs of the values left over."""
        grouped = values.size >> levels << levels
        if self._buffers[0].size < grouped // 2:
            self._buffers = (np.empty(grouped // 2), np.empty(grouped // 4))
        first, second = self._buffers
        current = values[:grouped]
        for level in range(levels):
            out = (first, second)[level % 2][: current.size // 2]
            np.multiply(current[0::2], current[1::2], out=out)
            current = out
        return float(np.log(current).sum()) + float(np.log(values[grouped:]).sum())
