"""How small a difference a paired comparison can see, and how many items a claim needs.

Pure arithmetic (the standard library only). Configs A and B scored on the same n items differ
item by item by d_i = a_i - b_i; write psi for the second moment mean(d_i^2) (for 0/1 scores, the
share of discordant items: one config right, the other wrong) and delta for the true mean
difference. The paired test at two-sided level alpha then has, in the normal approximation that
Connor (1987) gives for McNemar's test,

    power(delta) = Phi((delta * sqrt(n) - z_{1-alpha/2} * sqrt(psi)) / sqrt(psi - delta^2))

and a difference delta needs n = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2
items. The minimum detectable effect (MDE) is the smallest delta whose power reaches the target.
A true difference of delta needs the configs to disagree on at least a delta share of the items,
so psi is taken as at least delta: a comparison whose configs happened to agree on every item
still cannot see a difference smaller than about (z_{1-alpha/2} + z_{power})^2 / n.
`tests/test_stats.py` checks the MDE against simulated exact McNemar tests.
"""

from __future__ import annotations

import math
from statistics import NormalDist

ALPHA = 0.05
POWER = 0.8


def _z(p: float) -> float:
    return NormalDist().inv_cdf(p)


def _check(alpha: float, power: float) -> None:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie strictly between 0 and 1, not {alpha} and {power}")


def power_at(delta: float, psi: float, n: int, alpha: float = ALPHA) -> float:
    """The chance a two-sided paired test at `alpha` on `n` items finds a true difference `delta`
    (a share) when the items' differences have second moment `psi` (at least `delta`, see above)."""
    psi = max(psi, delta)
    spread = math.sqrt(max(psi - delta * delta, 0.0))
    edge = delta * math.sqrt(n) - _z(1 - alpha / 2) * math.sqrt(psi)
    if spread == 0.0:
        return 1.0 if edge > 0 else 0.0
    return NormalDist().cdf(edge / spread)


def mde(psi: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float | None:
    """The smallest true difference (a share, 0-1) a two-sided paired test at `alpha` finds with
    probability `power` on `n` items whose differences have second moment `psi`; None on no items."""
    _check(alpha, power)
    if n <= 0:
        return None
    low, high = 0.0, 1.0
    if power_at(high, psi, n, alpha) < power:
        return None  # too few items to detect even a complete reversal
    for _ in range(60):  # bisection: the power grows with the difference
        mid = (low + high) / 2
        low, high = (mid, high) if power_at(mid, psi, n, alpha) < power else (low, mid)
    return high


def items_needed(difference: float, discordance: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Items a paired comparison needs to find `difference` (a share) with `power`, when the
    configs disagree on a `discordance` share of the items (at least the difference itself)."""
    _check(alpha, power)
    if not 0 < difference <= 1:
        raise ValueError(f"the difference must be a share in (0, 1], not {difference}")
    if not difference <= discordance <= 1:
        raise ValueError(f"the discordance must lie between the difference ({difference}) and 1, not {discordance}")
    root = _z(1 - alpha / 2) * math.sqrt(discordance) + _z(power) * math.sqrt(discordance - difference**2)
    return math.ceil(root**2 / difference**2)


def independent_discordance(accuracy_a: float, accuracy_b: float) -> float:
    """The share of items two configs disagree on if their errors were independent: the usual
    assumption before any run (configs of one model agree more, so this errs towards more items)."""
    return accuracy_a * (1 - accuracy_b) + accuracy_b * (1 - accuracy_a)
