"""The scenario axis S: {buy, sell} x {VWAP, TWAP} x {quantity, notional}, named in one place."""

import itertools

import numpy as np

SIDES = ("buy", "sell")
BENCHMARKS = ("vwap", "twap")
TARGETS = ("quantity", "notional")

# Scenario index s enumerates (side, benchmark, target) with target varying fastest.
SCENARIOS = tuple(itertools.product(SIDES, BENCHMARKS, TARGETS))
NUM_SCENARIOS = len(SCENARIOS)

# +1 for buy, -1 for sell: improvement = side * (1 - P / benchmark) * 1e4 bps.
SIDE_SIGN_S = np.array([1.0 if side == "buy" else -1.0 for side, _, _ in SCENARIOS], np.float32)
IS_TWAP_S = np.array([bench == "twap" for _, bench, _ in SCENARIOS])
IS_NOTIONAL_S = np.array([target == "notional" for _, _, target in SCENARIOS])


def scenario_index(side: str, benchmark: str, target: str) -> int:
  """Index of a scenario on the S axis; raises ValueError naming a bad field."""
  for name, value, allowed in (
    ("side", side, SIDES),
    ("benchmark", benchmark, BENCHMARKS),
    ("target", target, TARGETS),
  ):
    if value not in allowed:
      raise ValueError(f"{name}={value!r} is not one of {allowed}")
  return SCENARIOS.index((side, benchmark, target))


def scenario_name(s: int) -> str:
  """Human-readable name, e.g. 'buy/vwap/quantity'."""
  return "/".join(SCENARIOS[s])
