"""A parent order's terms, checked against a model's horizon."""

from __future__ import annotations

import dataclasses

import numpy as np

from lemjax import allocation
from lemjax import scenarios


@dataclasses.dataclass(frozen=True)
class Order:
  """A parent order's terms (SPEC section 1)."""

  side: str  # "buy" or "sell"
  size: float  # shares (target "quantity") or cash (target "notional")
  target: str = "quantity"  # "quantity" or "notional"
  benchmark: str = "vwap"  # "vwap" or "twap"
  min_bars: int | None = None  # minimum duration in bars, 1..N (None only with fixed_duration)
  max_bars: int | None = None  # maximum duration in bars: must be the model's N (None: N)
  r_min: float = 0.0  # per-bar lower bound, fraction of the order
  r_max: float = 1.0  # per-bar upper bound, fraction of the order
  fixed_duration: bool = False  # trade over all N bars, tracking the benchmark (head k = N)
  # rho: a child <= rho x its bar's expected volume when the policy charges costs (None: the
  # policy's `costs.participation_cap`); lemjax/costs.py
  participation_cap: float | None = None

  def check(self, n_ahead: int) -> tuple[int, int]:
    """(head k, scenario index); ValueError naming the first bad field."""
    try:
      scenario = scenarios.scenario_index(self.side, self.benchmark, self.target)
    except ValueError as err:
      raise ValueError(f"Order.{err}") from None
    if isinstance(self.size, bool) or not np.isfinite(self.size) or self.size <= 0:
      raise ValueError(
        f"Order.size={self.size!r} must be a finite positive number of shares or cash"
      )
    if self.max_bars is not None and self.max_bars != n_ahead:
      raise ValueError(
        f"Order.max_bars={self.max_bars!r}: this model's maximum duration is N={n_ahead} "
        "bars (train a model with model.n_ahead for another horizon)"
      )
    if self.fixed_duration:
      if self.min_bars not in (None, n_ahead):
        raise ValueError(
          f"Order.min_bars={self.min_bars!r} contradicts fixed_duration=True (N={n_ahead})"
        )
      head = n_ahead
    else:
      if self.min_bars is None:
        raise ValueError("Order.min_bars is required (1..N) unless fixed_duration=True")
      if (
        isinstance(self.min_bars, bool)
        or int(self.min_bars) != self.min_bars
        or not 1 <= self.min_bars <= n_ahead
      ):
        raise ValueError(f"Order.min_bars={self.min_bars!r} must be an integer in [1, N={n_ahead}]")
      head = int(self.min_bars) - 1
    cap = self.participation_cap
    if cap is not None and (isinstance(cap, bool) or not np.isfinite(cap) or not 0 < cap <= 1):
      raise ValueError(f"Order.participation_cap={cap!r} must lie in (0, 1] (or be None)")
    try:
      allocation.validate_bounds(self.r_min, self.r_max, n_ahead)
    except ValueError as err:
      raise ValueError(f"Order: {err}") from None
    return head, scenario
