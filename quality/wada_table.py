"""Build the WADA-SNR lookup table G(SNR) by numerical integration (Kim & Stern 2008).

Model: clean speech x has a symmetric amplitude distribution, |x| ~ Gamma(shape
alpha = 0.4, scale 1); noise n ~ N(0, sigma^2) is independent; the observed signal
is z = x + n and SNR_dB = 10 log10(E[x^2] / sigma^2) with E[x^2] = alpha (alpha + 1).
The statistic is

    G(SNR) = ln E|z| - E ln|z|,

tabulated for SNR = -20 ... 100 dB in 1 dB steps and stored in
`quality/data/wada_snr_table.json`, which `quality.snr.wada_snr_db` inverts.

How the integral is done, so that the table is exact to ~1e-9 and identical on
every machine (no random numbers):

- Conditioning on x, with mu = |x| / sigma and e ~ N(0, 1):
  E|z| = sigma * f1(mu) with the folded-normal mean
  f1(mu) = sqrt(2/pi) exp(-mu^2/2) + mu erf(mu / sqrt 2), and
  E ln|z| = ln sigma + h(mu) with h(mu) = E ln|mu + e|. Since (mu + e)^2 is a
  Poisson(mu^2/2) mixture of chi-square(1 + 2k) variables and
  E ln chi2_nu = ln 2 + digamma(nu/2),
  h(mu) = (ln 2 + sum_k Poisson(k; mu^2/2) digamma(1/2 + k)) / 2;
  for mu > 12 the asymptotic series ln mu - sum_m (2m-1)!! / (2m mu^(2m)) is used.
- The Gamma(0.4) density has an integrable singularity at 0; substituting
  |x| = u^(1/alpha) turns it into the smooth weight exp(-u^(1/alpha)) / Gamma(alpha+1)
  on u >= 0, integrated with Gauss-Legendre on log-spaced panels (the integrand
  changes near u ~ sigma^alpha, which spans many decades over the table).

Run `python -m quality.wada_table` to regenerate the stored file (it prints the
largest change against the stored copy).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

ALPHA = 0.4
SNR_MIN_DB = -20
SNR_MAX_DB = 100
TABLE_PATH = Path(__file__).resolve().parent / "data" / "wada_snr_table.json"

_SERIES_MAX_MU = 12.0
_SERIES_TERMS = 260  # Poisson(mean 72) mass beyond k = 260 is far below 1e-30
_ASYMPTOTIC_TERMS = 8


def _digamma_half_plus_k(terms: int) -> np.ndarray:
    """digamma(1/2 + k) for k = 0 .. terms-1, by the recurrence digamma(t+1) = digamma(t) + 1/t."""
    digamma_half = -0.57721566490153286061 - 2.0 * math.log(2.0)
    steps = 1.0 / (0.5 + np.arange(terms - 1, dtype=np.float64))
    return digamma_half + np.concatenate([[0.0], np.cumsum(steps)])


def expected_log_abs_normal(mu: np.ndarray) -> np.ndarray:
    """h(mu) = E ln|mu + e| for e ~ N(0, 1), mu >= 0 (natural log, dimensionless)."""
    mu = np.asarray(mu, dtype=np.float64)
    out = np.empty_like(mu)
    small = mu <= _SERIES_MAX_MU
    if small.any():
        lam = np.maximum(mu[small] ** 2 / 2.0, 1e-300)[:, None]
        k = np.arange(_SERIES_TERMS, dtype=np.float64)[None, :]
        log_fact = np.array([math.lgamma(i + 1.0) for i in range(_SERIES_TERMS)])[None, :]
        log_weights = -lam + k * np.log(lam) - log_fact
        digammas = _digamma_half_plus_k(_SERIES_TERMS)[None, :]
        out[small] = 0.5 * (math.log(2.0) + np.sum(np.exp(log_weights) * digammas, axis=1))
    large = ~small
    if large.any():
        m = mu[large]
        total = np.log(m)
        double_factorial = 1.0
        for order in range(1, _ASYMPTOTIC_TERMS + 1):
            double_factorial *= 2 * order - 1
            total -= double_factorial / (2 * order * m ** (2 * order))
        out[large] = total
    return out


def expected_abs_normal(mu: np.ndarray) -> np.ndarray:
    """f1(mu) = E|mu + e| for e ~ N(0, 1), mu >= 0: the folded-normal mean (dimensionless)."""
    mu = np.asarray(mu, dtype=np.float64)
    erf = np.frompyfunc(math.erf, 1, 1)
    return math.sqrt(2.0 / math.pi) * np.exp(-(mu**2) / 2.0) + mu * erf(mu / math.sqrt(2.0)).astype(
        np.float64
    )


def _quadrature(alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes u and weights w with sum(w * g(u)) = E g(|x|^alpha) for |x| ~ Gamma(alpha, 1)."""
    upper = 60.0**alpha  # exp(-60) of the mass lies beyond
    edges = np.concatenate([[0.0], np.geomspace(1e-9, upper, 400)])
    nodes, weights = np.polynomial.legendre.leggauss(24)
    lo, hi = edges[:-1, None], edges[1:, None]
    u = (lo + (hi - lo) * (nodes[None, :] + 1.0) / 2.0).ravel()
    w = ((hi - lo) / 2.0 * weights[None, :]).ravel()
    w = w * np.exp(-(u ** (1.0 / alpha))) / math.gamma(alpha + 1.0)
    return u, w


def g_of_snr(snr_db: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """G = ln E|z| - E ln|z| under the Gamma(alpha) speech + Gaussian noise model, per SNR (dB)."""
    u, w = _quadrature(alpha)
    amplitude = u ** (1.0 / alpha)
    speech_power = alpha * (alpha + 1.0)
    out = []
    for snr in np.atleast_1d(np.asarray(snr_db, dtype=np.float64)):
        sigma = math.sqrt(speech_power / 10.0 ** (snr / 10.0))
        mu = amplitude / sigma
        mean_abs = sigma * np.sum(w * expected_abs_normal(mu))
        mean_log_abs = math.log(sigma) + np.sum(w * expected_log_abs_normal(mu))
        out.append(math.log(mean_abs) - mean_log_abs)
    return np.array(out)


def build_table() -> dict:
    """The table as stored: SNR grid (dB), G values (natural log), and how they were made."""
    snr_db = np.arange(SNR_MIN_DB, SNR_MAX_DB + 1, dtype=np.float64)
    g = g_of_snr(snr_db)
    if not np.all(np.diff(g) > 0):
        raise RuntimeError("G(SNR) is not strictly increasing; the table cannot be inverted")
    return {
        "description": (
            "WADA-SNR table (Kim & Stern 2008): G = ln E|z| - E ln|z| for z = x + n, "
            "|x| ~ Gamma(alpha, 1) with random sign, n ~ N(0, sigma^2), "
            "SNR_dB = 10 log10(alpha (alpha + 1) / sigma^2); numerical integration, "
            "regenerate with `python -m quality.wada_table`"
        ),
        "alpha": ALPHA,
        "snr_db": [int(s) for s in snr_db],
        "g": [round(float(v), 10) for v in g],
    }


def main() -> None:
    """Regenerate the stored table and report how much it changed."""
    table = build_table()
    if TABLE_PATH.exists():
        old = np.array(json.loads(TABLE_PATH.read_text(encoding="utf-8"))["g"])
        print(f"largest change against the stored table: {np.max(np.abs(old - table['g'])):.2e}")
    TABLE_PATH.parent.mkdir(parents=True, exist_ok=True)
    TABLE_PATH.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {TABLE_PATH} ({len(table['g'])} entries)")


if __name__ == "__main__":
    main()
