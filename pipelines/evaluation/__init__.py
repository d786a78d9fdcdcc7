"""Evaluations as a curator reads them: error rates with bootstrap intervals, comparisons of
two evaluations on the same utterances, and the self-contained HTML report."""
