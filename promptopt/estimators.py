"""The pure estimators every statistic of promptopt is made of: intervals (Wilson, bootstrap,
clustered), paired tests (sign test, mid-p, paired bootstrap, TOST), Holm's correction, Cohen's
kappa, macro F1, busy time. Numbers and arrays in, numbers out: nothing here imports from the
rest of promptopt (no models, judges or records), so a reader can check each against its textbook
definition, and promptopt.stats builds the report's tables from them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
MIN_PAIRED = 10  # fewest common items a paired verdict is given on


def wilson(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; sensible at 0, n and small n."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_means(values: np.ndarray, b: int = 10_000, seed: int = 0) -> np.ndarray:
    """b means of samples drawn with replacement from `values` (the bootstrap over items).

    Scores take few distinct values (0/1, or -1/0/1 for a paired difference), so a resample's
    mean only depends on how many items of each value it drew: one multinomial draw per
    resample gives the same distribution as resampling items, at a cost independent of n.
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    rng = np.random.default_rng(seed)
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) <= 64:
        draws = rng.multinomial(n, counts / n, size=b)
        return draws @ levels / n
    out = np.empty(b)
    step = max(1, 2_000_000 // n)  # bound memory: resample in chunks of ~2M items
    for start in range(0, b, step):
        stop = min(b, start + step)
        out[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return out


def clustered(clusters) -> bool:
    """Do these per-item cluster labels put any two items together?"""
    return clusters is not None and len(clusters) > 0 and len(pd.unique(np.asarray(clusters))) < len(clusters)


def _cluster_sums(values: np.ndarray, clusters) -> tuple[np.ndarray, np.ndarray]:
    codes, _ = pd.factorize(np.asarray(clusters))
    return np.bincount(codes, weights=values), np.bincount(codes).astype(float)


def cluster_se(values: np.ndarray, clusters) -> tuple[float, int]:
    """The standard error of the mean over clustered items (the ratio estimator's, with the small
    sample factor k / (k − 1)) and the number of clusters k."""
    values = np.asarray(values, dtype=float)
    sums, sizes = _cluster_sums(values, clusters)
    k = len(sums)
    if k < 2:
        return 0.0, k
    resid = sums - values.mean() * sizes
    return float(math.sqrt(k / (k - 1) * (resid**2).sum()) / len(values)), k


def cluster_t(values: np.ndarray, clusters, bounds: tuple[float, float] = (0.0, 1.0)) -> tuple[float, float, float]:
    """95% interval of the mean of clustered items, and the two-sided p of "the mean is 0": Student's
    t with k − 1 degrees of freedom on the clusters' standard error (a percentile bootstrap over
    30 clusters covers about 92%, this one about 95%: benchmarks/clustered_intervals.py). With one
    cluster, the whole range `bounds` and p = 1."""
    from scipy.stats import t

    mean = float(np.mean(values))
    se, k = cluster_se(values, clusters)
    if k < 2:  # one cluster is one unit of evidence: no interval narrower than the scores' range
        return bounds[0], bounds[1], 1.0
    if se == 0.0:  # every cluster agrees: the sign test over clusters
        return mean, mean, (1.0 if mean == 0.0 else sign_test_p(k, 0))
    q = float(t.ppf(0.975, k - 1))
    return mean - q * se, mean + q * se, float(2 * t.sf(abs(mean) / se, k - 1))


def design_effect(values: np.ndarray, clusters) -> float:
    """The variance of the mean counting clusters (the ratio estimator's, over clusters) over the
    variance as if the items were independent: 1 for independent items, up to the cluster size
    when a cluster's items always agree. 1 without clusters or without variance."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    if not clustered(clusters) or n < 2 or values.var() == 0:
        return 1.0
    se, k = cluster_se(values, clusters)
    return float(n) if k < 2 else float(se**2 / (values.var(ddof=1) / n))  # one cluster: one item's worth


def bootstrap_ci(scores: np.ndarray, b: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over items, for scores that are not plain 0/1."""
    if len(scores) == 0:
        return (0.0, 1.0)
    means = bootstrap_means(scores, b=b, seed=seed)
    return (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def score_ci(scores: np.ndarray, b: int = 10_000, seed: int = 0, clusters=None) -> tuple[float, float]:
    """Wilson for binary scores, bootstrap otherwise; items in clusters (per-item labels): Wilson
    at the effective number of items (n over the design effect, which is at least 1), or the
    bootstrap over clusters."""
    scores = np.asarray(scores, dtype=float)
    binary = bool(np.isin(scores, (0.0, 1.0)).all())
    if not clustered(clusters):
        return wilson(float(scores.sum()), len(scores)) if binary else bootstrap_ci(scores, b=b, seed=seed)
    if binary:
        effective = len(scores) / max(1.0, design_effect(scores, clusters))
        return wilson(float(scores.mean()) * effective, effective)
    low, high, _ = cluster_t(scores, clusters)
    return (low, high)


def paired_bootstrap(a: np.ndarray, b_: np.ndarray, b: int = 10_000, seed: int = 0) -> tuple[float, float, float]:
    """Mean difference a - b over the same items, with a 95% percentile bootstrap interval."""
    diff = np.asarray(a, dtype=float) - np.asarray(b_, dtype=float)
    if len(diff) == 0:
        return (0.0, 0.0, 0.0)
    means = bootstrap_means(diff, b=b, seed=seed)
    return (float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))


def sign_test_p(wins: int, losses: int, one_sided: bool = False) -> float:
    """Exact McNemar (sign) test on the discordant items: P(as few as min(wins, losses) | a tie).

    Two-sided by default; one-sided, the probability that `wins` is this small or smaller.
    """
    m = wins + losses
    if m == 0:
        return 1.0
    k = wins if one_sided else min(wins, losses)
    # the binomial(m, 1/2) tail P(X <= k), summed in log space so that large m stays fast
    logs = np.array([math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) for i in range(k + 1)])
    top = logs.max()
    tail = math.exp(top + math.log(np.exp(logs - top).sum()) - m * math.log(2))
    return min(1.0, tail if one_sided else 2 * tail)


def mid_p(wins: int, losses: int) -> float:
    """McNemar's mid-p on the discordant items: the exact two-sided p minus the probability of
    the observed split itself. Its level is closer to alpha than the exact test's, which is
    conservative on few discordant items (at alpha 0.05: 4.4% against 3.1% at n = 100,
    BENCHMARKS.md §16)."""
    m = wins + losses
    if m == 0:
        return 1.0
    k = min(wins, losses)
    at_k = math.exp(math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1) - m * math.log(2))
    return min(1.0, max(0.0, sign_test_p(wins, losses) - (at_k if wins != losses else 0.0)))


def paired_p(a: np.ndarray, b_: np.ndarray, b: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value for "a and b score the same on these items".

    Binary scores: McNemar's test, mid-p (`mid_p`). Other scores: the bootstrap shifted to a
    zero mean (the share of resampled means at least as far from the observed one as zero is).
    """
    a, b_ = np.asarray(a, dtype=float), np.asarray(b_, dtype=float)
    if len(a) == 0:
        return 1.0
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b_, (0.0, 1.0)).all():
        return mid_p(int(((a == 1) & (b_ == 0)).sum()), int(((a == 0) & (b_ == 1)).sum()))
    diff = a - b_
    observed = float(diff.mean())
    if observed == 0.0:
        return 1.0
    means = bootstrap_means(diff, b=b, seed=seed)
    return float((1 + np.sum(np.abs(means - observed) >= abs(observed))) / (b + 1))


def tost_p(diff: np.ndarray, margin: float, n: float | None = None) -> float | None:
    """Two one-sided tests of "the mean difference lies within ±margin" (equivalence): the larger
    of the two one-sided p-values, so p < alpha claims equivalence at level alpha. Differences of
    0/1 scores (in -1, 0, 1) on independent items: each one-sided test is the score test with the
    variance at its boundary (`_paired_score_z`; the plain normal approximation claimed
    equivalence 6.8% of the time at the margin, BENCHMARKS.md §16); other differences, or `n`
    effective items of clustered ones: the normal approximation. None on fewer than two items."""
    from statistics import NormalDist

    diff = np.asarray(diff, dtype=float)
    if len(diff) < 2:
        return None
    if n is None and np.isin(diff, (-1.0, 0.0, 1.0)).all():
        wins, losses = int((diff == 1).sum()), int((diff == -1).sum())
        normal = NormalDist()
        upper = normal.cdf(_paired_score_z(wins, losses, len(diff), margin))  # H0: difference >= margin
        lower = 1 - normal.cdf(_paired_score_z(wins, losses, len(diff), -margin))  # H0: difference <= -margin
        return max(upper, lower)
    mean, se = float(diff.mean()), float(diff.std(ddof=1)) / math.sqrt(n or len(diff))  # n: effective items
    if se == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    normal = NormalDist()
    return max(1 - normal.cdf((mean + margin) / se), normal.cdf((mean - margin) / se))


def _paired_score_z(wins: int, losses: int, n: int, delta: float) -> float:
    """The score statistic of "p10 − p01 = delta" for paired 0/1 scores (`wins` items right under
    a only, `losses` under b only, of n): (observed difference − delta) over its standard error
    with p01 at its maximum-likelihood value under that constraint, the positive root of
    2n q² − [(w + l) + delta (w − l − 2n)] q − l delta (1 − delta) = 0 (for delta < 0 the same with
    a and b swapped)."""
    if delta < 0:
        return -_paired_score_z(losses, wins, n, -delta)
    linear = (wins + losses) + delta * (wins - losses - 2 * n)
    q = (linear + math.sqrt(linear * linear + 8 * n * losses * delta * (1 - delta))) / (4 * n)
    variance = (2 * q + delta * (1 - delta)) / n
    observed = (wins - losses) / n
    if variance <= 0:
        return 0.0 if observed == delta else math.copysign(math.inf, observed - delta)
    return (observed - delta) / math.sqrt(variance)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment: reject where the adjusted p < alpha keeps the family-wise
    error rate at alpha under any dependence between the comparisons."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def verdict(low: float, high: float) -> str:
    """better / worse / tie from an interval of a difference (uncorrected)."""
    return "better" if low > 0 else "worse" if high < 0 else "tie"


def kappa(verdicts: list[bool], expected: list[bool]) -> float:
    """Cohen's kappa between two raters' yes/no labels: (p_o - p_e) / (1 - p_e); 1 when both
    agree on every item even with one label only, 0 when p_e is 1 and they do not."""
    n = len(verdicts)
    if n == 0:
        return 0.0
    observed = sum(a == b for a, b in zip(verdicts, expected, strict=True)) / n
    yes_a, yes_b = sum(verdicts) / n, sum(expected) / n
    chance = yes_a * yes_b + (1 - yes_a) * (1 - yes_b)
    if chance >= 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return (observed - chance) / (1 - chance)


def macro_f1(said: list[bool], truth: list[bool]) -> float:
    """The mean of the pass class's and the fail class's F1 (a class neither side uses is left out)."""
    scores = []
    for label in (True, False):
        tp = sum(s == label and t == label for s, t in zip(said, truth, strict=True))
        fp = sum(s == label and t != label for s, t in zip(said, truth, strict=True))
        fn = sum(s != label and t == label for s, t in zip(said, truth, strict=True))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 1.0


def busy_seconds(start: np.ndarray, end: np.ndarray) -> float:
    """Seconds covered by the union of the intervals [start, end]: overlapping calls (threads
    sharing one machine) count once, and pauses between runs not at all."""
    order = np.argsort(start)
    total, reach = 0.0, -np.inf
    for a, b in zip(np.asarray(start, dtype=float)[order], np.asarray(end, dtype=float)[order], strict=True):
        if a > reach:
            total += b - a
        elif b > reach:
            total += b - reach
        reach = max(reach, b)
    return float(total)
