"""Tests for lemjax.kan: the B-spline basis and KANLinear."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lemjax import kan


def cox_de_boor(x: float, knots: list[float], i: int, k: int) -> float:
  """Textbook scalar recursion for the i-th B-spline of order k (degree k) at x."""
  if k == 0:
    return 1.0 if knots[i] <= x < knots[i + 1] else 0.0
  left = (x - knots[i]) / (knots[i + k] - knots[i]) * cox_de_boor(x, knots, i, k - 1)
  right = (
    (knots[i + k + 1] - x) / (knots[i + k + 1] - knots[i + 1]) * cox_de_boor(x, knots, i + 1, k - 1)
  )
  return left + right


def test_uniform_grid_extends_range_by_order_knots():
  grid = kan.uniform_grid(3, 3, (-1.0, 1.0))
  assert grid.shape == (3 + 2 * 3 + 1,)
  np.testing.assert_allclose(np.diff(grid), 2.0 / 3.0, rtol=1e-6)
  np.testing.assert_allclose([grid[3], grid[6]], [-1.0, 1.0], atol=1e-6)
  with pytest.raises(ValueError, match="grid_range"):
    kan.uniform_grid(3, 3, (1.0, -1.0))


@pytest.mark.parametrize(
  "grid_size,order,grid_range",
  [(3, 3, (-1.0, 1.0)), (5, 2, (-2.0, 0.5)), (1, 1, (0.0, 1.0)), (4, 0, (-1.0, 1.0))],
)
def test_basis_matches_scalar_cox_de_boor(grid_size, order, grid_range):
  grid = kan.uniform_grid(grid_size, order, grid_range)
  rng = np.random.default_rng(grid_size * 10 + order)
  span = grid[-1] - grid[0]
  x = rng.uniform(grid[0] - 0.1 * span, grid[-1] + 0.1 * span, size=200).astype(np.float32)
  got = np.asarray(kan.bspline_basis(jnp.asarray(x), grid, order))
  assert got.shape == (200, grid_size + order)
  knots = [float(v) for v in grid]
  want = np.array(
    [[cox_de_boor(float(xi), knots, i, order) for i in range(grid_size + order)] for xi in x]
  )
  np.testing.assert_allclose(got, want, atol=2e-5)


def test_basis_partition_of_unity_and_nonnegative():
  grid = kan.uniform_grid(3, 3, (-1.0, 1.0))
  rng = np.random.default_rng(0)
  inside = np.concatenate([rng.uniform(-1, 1, 501), [-1.0, 0.0, 1.0]]).astype(np.float32)
  basis = np.asarray(kan.bspline_basis(jnp.asarray(inside.reshape(7, 3, 24)), grid, 3))
  assert basis.shape == (7, 3, 24, 6)
  np.testing.assert_allclose(basis.sum(-1), 1.0, atol=1e-5)
  everywhere = jnp.asarray(rng.uniform(-5, 5, 1000).astype(np.float32))
  assert float(jnp.min(kan.bspline_basis(everywhere, grid, 3))) >= 0.0


def test_basis_rejects_bad_grid():
  with pytest.raises(ValueError, match="grid"):
    kan.bspline_basis(jnp.zeros(3), np.zeros((2, 5), np.float32), 3)
  with pytest.raises(ValueError, match="increasing"):
    kan.bspline_basis(jnp.zeros(3), np.array([0.0, 1.0, 1.0, 2.0, 3.0, 4.0]), 3)


@pytest.fixture(scope="module")
def layer_and_params():
  layer = kan.KANLinear(5, grid_size=3, order=3)
  x = jax.random.normal(jax.random.key(0), (4, 7))
  return layer, layer.init(jax.random.key(1), x)["params"], x


def test_kan_linear_shapes_and_jit(layer_and_params):
  layer, params, x = layer_and_params
  assert params["spline"]["kernel"].shape == (7 * (3 + 3), 5)
  assert params["base"]["kernel"].shape == (7, 5)
  y = layer.apply({"params": params}, x)
  y_jit = jax.jit(layer.apply)({"params": params}, x)
  assert y.shape == (4, 5) and y.dtype == jnp.float32
  assert np.all(np.isfinite(y))
  np.testing.assert_allclose(y, y_jit, rtol=1e-6, atol=1e-6)


def test_kan_linear_is_base_plus_spline_on_normalised_input(layer_and_params):
  layer, params, x = layer_and_params
  xn = nn.LayerNorm().apply({"params": params["norm"]}, x)
  base = nn.silu(xn) @ params["base"]["kernel"] + params["base"]["bias"][None]
  basis = kan.bspline_basis(xn, kan.uniform_grid(3, 3, (-1.0, 1.0)), 3)  # [4, 7, 6]
  # The layer's kernel rows are ordered (basis index, feature).
  kernel = params["spline"]["kernel"].reshape(6, 7, 5)
  spline = jnp.einsum("bdc,cdo->bo", basis, kernel, precision="highest")
  np.testing.assert_allclose(layer.apply({"params": params}, x), base + spline, atol=1e-5)


def test_kan_linear_rejects_unknown_activation():
  with pytest.raises(ValueError, match="activation"):
    kan.KANLinear(3, base_activation="nope").init(jax.random.key(0), jnp.zeros((2, 4)))
