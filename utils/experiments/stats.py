"""The statistics of a comparison over seeds: t-based 95 % confidence intervals, paired and Welch t-tests,
and Holm's correction for testing every pair at once."""
import math
import warnings

import numpy as np
from scipy import stats

ALPHA = 0.05


def mean_ci(values, level=0.95):
    """(mean, half-width of the t-based confidence interval); the half-width is nan for fewer than 2 values."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return float(values.mean()) if len(values) else float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(half)


def paired(a, b):
    """Two-sided paired t-test on per-seed values a[i], b[i] (same seed = same split and batch order)."""
    if len(a) < 2:
        return float("nan")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff, scale = a - b, np.abs(np.concatenate([a, b])).max()
    if _rounding_only(diff, scale):  # every seed moved by the same amount
        return 1.0 if _rounding_only([diff.mean(), 0.0], scale) else 0.0
    return float(stats.ttest_rel(a, b).pvalue)


def welch(a, b):
    """Welch's two-sample t-test (unequal variances), unpaired; nan when undefined."""
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = np.abs(np.concatenate([a, b])).max()
    flat_a, flat_b = _rounding_only(a, scale), _rounding_only(b, scale)
    if flat_a and flat_b:
        return 1.0 if _rounding_only([a.mean(), b.mean()], scale) else 0.0
    with warnings.catch_warnings():
        if flat_a or flat_b:  # one sample without spread only drops its variance term: the test stays exact, but scipy
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)  # warns about that sample
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _rounding_only(values, scale):
    """Whether values differ by no more than floating-point rounding at this scale. scipy's t-tests divide by the
    spread: a spread of rounding noise (0.3 − 0.2 is not 0.4 − 0.3 in floats) would give a p-value of noise, with
    only a RuntimeWarning, where the exact answer is "no spread"."""
    return float(np.ptp(values)) <= 1e-12 * max(1.0, float(scale))


def holm(p_values):
    """Holm's step-down adjustment of a family of p-values (nan stays nan, and does not count)."""
    order = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    adjusted, running = [float("nan")] * len(p_values), 0.0
    for rank, (p, i) in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * p))
        adjusted[i] = running
    return adjusted
