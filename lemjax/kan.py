"""Kolmogorov-Arnold layer: a base branch plus a B-spline branch on a fixed uniform grid."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lemjax import precision as precision_lib

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
  "silu": nn.silu,
  "relu": nn.relu,
  "gelu": nn.gelu,
  "tanh": jnp.tanh,
  "elu": nn.elu,
  "identity": lambda x: x,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Looks up an activation by name; ValueError on unknown names."""
  if name not in _ACTIVATIONS:
    raise ValueError(f"unknown activation {name!r}; expected one of {sorted(_ACTIVATIONS)}")
  return _ACTIVATIONS[name]


def uniform_grid(grid_size: int, order: int, grid_range: tuple[float, float]) -> np.ndarray:
  """Knots of a uniform grid of `grid_size` intervals over `grid_range`, extended by `order` knots.

  Args:
    grid_size: G, number of intervals inside `grid_range`.
    order: k, spline order (3 = cubic).
    grid_range: (lo, hi) with lo < hi.

  Returns:
    float32 numpy array [G + 2k + 1] of increasing knots.
  """
  lo, hi = float(grid_range[0]), float(grid_range[1])
  if grid_size < 1 or order < 0 or not hi > lo:
    raise ValueError(f"bad grid: grid_size={grid_size}, order={order}, grid_range={grid_range}")
  step = (hi - lo) / grid_size
  return (lo + step * np.arange(-order, grid_size + order + 1)).astype(np.float32)


def _bspline_bases(x: jax.Array, grid: np.ndarray, order: int) -> list[jax.Array]:
  """Cox-de Boor recursion kept as a list of G + k arrays shaped like `x`.

  One array per basis function (not a trailing basis axis) keeps every op a full-width
  elementwise op that XLA fuses; a short trailing axis vectorises poorly on CPU.
  """
  grid = np.asarray(grid, np.float64)
  if grid.ndim != 1 or grid.shape[0] < order + 2:
    raise ValueError(
      f"grid must be 1-D with at least order + 2 = {order + 2} knots, got shape {grid.shape}"
    )
  if np.any(np.diff(grid) <= 0):
    raise ValueError(f"grid knots must be strictly increasing, got {grid}")
  knots = [float(v) for v in grid]
  # Order 0: indicators of the half-open knot intervals.
  bases = [
    jnp.logical_and(x >= lo, x < hi).astype(x.dtype) for lo, hi in zip(knots[:-1], knots[1:])
  ]
  for j in range(1, order + 1):
    # Static knots: the reciprocal denominators are Python constants.
    bases = [
      (x - knots[i]) * (1.0 / (knots[i + j] - knots[i])) * bases[i]
      + (knots[i + j + 1] - x) * (1.0 / (knots[i + j + 1] - knots[i + 1])) * bases[i + 1]
      for i in range(len(bases) - 1)
    ]
  return bases


def bspline_basis(x: jax.Array, grid: np.ndarray, order: int) -> jax.Array:
  """B-spline basis functions of order `order` on the knots `grid` (Cox-de Boor, vectorised).

  Args:
    x: [...] points, any shape.
    grid: [G + 2k + 1] strictly increasing knots (static, e.g. from `uniform_grid`).
    order: k >= 0.

  Returns:
    [..., G + k] basis values; they are >= 0 and sum to 1 for x inside [grid[k], grid[-k-1]].
  """
  return jnp.stack(_bspline_bases(x, grid, order), axis=-1)


class KANLinear(nn.Module):
  """Layer norm, then `linear(act(x)) + linear(bspline_basis(x))`, vectorised over features.

  Attributes:
    features: output width O.
    grid_size: G, uniform grid intervals.
    order: k, B-spline order.
    grid_range: (lo, hi) range of the grid before its extension by k knots each side.
    base_activation: name of the base-branch activation (see `activation`).
    precision: matmul policy (lemjax/precision.py).
  """

  features: int
  grid_size: int = 3
  order: int = 3
  grid_range: tuple[float, float] = (-1.0, 1.0)
  base_activation: str = "silu"
  precision: str = "highest"

  @nn.compact
  def __call__(self, x_ZxD: jax.Array) -> jax.Array:
    """Maps [..., D] to [..., O]."""
    if x_ZxD.ndim < 1:
      raise ValueError(f"KANLinear input must have a feature axis, got shape {x_ZxD.shape}")
    act = activation(self.base_activation)
    grid = uniform_grid(self.grid_size, self.order, self.grid_range)
    x_ZxD = nn.LayerNorm(name="norm")(x_ZxD)
    base_ZxO = precision_lib.dense(self.precision, self.features, name="base")(act(x_ZxD))
    # One matmul over all (basis, feature) pairs: [..., (G + k) * D] @ [(G + k) * D, O].
    basis_ZxCxD = jnp.stack(_bspline_bases(x_ZxD, grid, self.order), axis=-2)
    flat = basis_ZxCxD.reshape(*basis_ZxCxD.shape[:-2], -1)
    spline = precision_lib.dense(self.precision, self.features, use_bias=False, name="spline")
    spline_ZxO = spline(flat)
    return base_ZxO + spline_ZxO
