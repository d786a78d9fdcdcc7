"""Model-free quality measures of speech utterances, and the curation code built on them.

`quality.measures.measure` computes every per-utterance measure (SNR estimates,
clipping, silence, levels, bandwidth, transcript rate); the individual measures
live in `quality.snr`, `quality.levels` and `quality.spectrum`. This package
imports only `schemas` and NumPy.
"""

from quality.measures import Measures, measure

__all__ = ["Measures", "measure"]
