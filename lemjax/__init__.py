"""lemjax: Large Execution Models in JAX/Flax.

Shape legend (names carry their shape as a suffix, e.g. ``x_BxTxF``):
  B  batch of parent orders          T  encoder sequence length, L + N - 1
  L  lookback bars before t0         N  execution bars (maximum duration, n_ahead)
  K  min-period heads, N + 1 (head k < N: minimum duration k + 1 bars; head N: fixed duration)
  S  scenarios, 8 (order in ``lemjax.scenarios.SCENARIOS``)
  F  input features                  E  per-feature embedding width
  H  hidden width                    A  assets in a pooled dataset
  G  start groups (one start time); in selection.GroupedDense, the stacked groups
  M  statistics (columns)            R  bootstrap resamples
  C  blocks per resample (stats); spline basis functions (kan)
  Z  rows of a position-wise block (any leading axes, e.g. B x T, flattened or not)
  D, O  input and output width of a dense block      P  basis functions of least-squares stopping
  Q  attention query positions (keys: K of that block)  W  bars in an online order's window

Units: prices and performance in basis points (bps); allocations are fractions of the
parent order in [0, 1].
"""

__version__ = "0.1.0"
