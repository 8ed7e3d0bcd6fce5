"""Temporal KAN: an LSTM-like cell whose output gate comes from recurrent KAN sub-layers, run by scan."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lemjax.kan import PRECISION, KANLinear

# carry = (h_BxH, c_BxH, sub_BxMxH); per-step inputs = (gates_Bx3H, sub_BxMxH), pre-projected.
Carry = tuple[jax.Array, jax.Array, jax.Array]
StepInputs = tuple[jax.Array, jax.Array]


def _gate_bias_init(hidden: int):
  """Zero bias except +1 on the forget gate, so the cell starts by remembering."""
  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.zeros(shape, dtype).at[hidden:2 * hidden].set(1.0)
  return init


def initial_carry(batch: int, hidden: int, n_sublayers: int) -> Carry:
  """Zero TKAN state: (h [B, H], c [B, H], sub [B, M, H])."""
  zeros_BxH = jnp.zeros((batch, hidden), jnp.float32)
  return zeros_BxH, zeros_BxH, jnp.zeros((batch, n_sublayers, hidden), jnp.float32)


class TKANCell(nn.Module):
  """One TKAN time step: `(carry, inputs_t) -> (carry, h_t)`.

  The input-dependent parts of the gates arrive pre-projected (see `TKAN.project`), so the
  step only does the carry-dependent work.

  Attributes:
    hidden: H, width of h, c and of every KAN sub-layer.
    n_sublayers: M, KAN sub-layers feeding the output gate.
    grid_size, order, grid_range, base_activation: KANLinear settings.
  """
  hidden: int
  n_sublayers: int = 1
  grid_size: int = 3
  order: int = 3
  grid_range: tuple[float, float] = (-1.0, 1.0)
  base_activation: str = "silu"

  @nn.compact
  def __call__(self, carry: Carry, inputs_t: StepInputs) -> tuple[Carry, jax.Array]:
    h_BxH, c_BxH, sub_BxMxH = carry
    gates_Bx3H, sub_in_BxMxH = inputs_t
    hid, m = self.hidden, self.n_sublayers
    # LSTM input and forget gates and cell candidate.
    gates_Bx3H = gates_Bx3H + nn.Dense(
        3 * hid, use_bias=False, precision=PRECISION,
        kernel_init=nn.initializers.orthogonal(), name="recurrent")(h_BxH)
    i_BxH, f_BxH, g_BxH = jnp.split(gates_Bx3H, 3, axis=-1)
    c_BxH = nn.sigmoid(f_BxH) * c_BxH + nn.sigmoid(i_BxH) * jnp.tanh(g_BxH)
    # Each KAN sub-layer reads the input and its own previous sub-state.
    w_sub_MxHxH = self.param("sub_recurrent", nn.initializers.orthogonal(), (m, hid, hid))
    sub_in_BxMxH = sub_in_BxMxH + jnp.einsum(
        "bmh,mhk->bmk", sub_BxMxH, w_sub_MxHxH, precision=PRECISION)
    out_BxMxH = jnp.stack([
        KANLinear(hid, self.grid_size, self.order, self.grid_range, self.base_activation,
                  name=f"kan_{j}")(sub_in_BxMxH[:, j]) for j in range(m)], axis=1)
    # Learned elementwise mix of the new KAN output and the previous sub-state.
    w_out_MxH = self.param("sub_mix_out", nn.initializers.constant(0.5), (m, hid))
    w_state_MxH = self.param("sub_mix_state", nn.initializers.constant(0.5), (m, hid))
    sub_BxMxH = w_out_MxH[None] * out_BxMxH + w_state_MxH[None] * sub_BxMxH
    # Output gate from the aggregated sub-layer outputs.
    o_BxH = nn.sigmoid(nn.Dense(hid, precision=PRECISION, name="output_gate")(
        out_BxMxH.reshape(out_BxMxH.shape[0], m * hid)))
    h_BxH = o_BxH * jnp.tanh(c_BxH)
    return (h_BxH, c_BxH, sub_BxMxH), h_BxH


def tkan_step(cell: TKANCell, params: Any, carry: Carry, inputs_t: StepInputs
              ) -> tuple[Carry, jax.Array]:
  """The pure step `step(params, carry, x_t) -> (carry, h_t)` of a TKAN cell.

  Args:
    cell: the cell module (e.g. `TKAN(...).make_cell()`).
    params: the cell's parameters (`params["cell"]` of a TKAN layer).
    carry: (h [B, H], c [B, H], sub [B, M, H]).
    inputs_t: pre-projected inputs of one step, (gates [B, 3H], sub [B, M, H]).

  Returns:
    (new carry, h_t [B, H]).
  """
  return cell.apply({"params": params}, carry, inputs_t)


def _merge_time(tree: Any) -> Any:
  """[T, B, ...] leaves -> [T * B, ...]: the cell treats rows independently."""
  return jax.tree.map(lambda a: a.reshape(a.shape[0] * a.shape[1], *a.shape[2:]), tree)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def scan_cell(step: Callable, params: Any, carry: Carry, xs_T: Any) -> tuple[Carry, jax.Array]:
  """`lax.scan` of `step(params, carry, x_t)` over the leading (time) axis of `xs_T`.

  Same values as `jax.lax.scan(lambda c, x: step(params, c, x), carry, xs_T)`, with a
  cheaper gradient: the reverse scan only propagates carry and input cotangents, and the
  parameter gradient is one pass of `step` over all T * B rows at once (big matmuls instead
  of T small ones accumulated in the loop). This needs every row of the batch to be
  independent inside `step`, which holds for a recurrent cell.

  Args:
    step: pure `(params, carry, x_t) -> (carry, y_t)`, batch on axis 0 of every leaf.
    params: parameter pytree.
    carry: initial carry, leaves [B, ...].
    xs_T: per-step inputs, leaves [T, B, ...].

  Returns:
    (final carry, ys [T, B, ...]).
  """
  return jax.lax.scan(lambda c, x: step(params, c, x), carry, xs_T)


def _scan_cell_fwd(step, params, carry, xs_T):
  def body(c, x):
    c_next, y = step(params, c, x)
    return c_next, (y, c)
  carry_T, (ys_T, carries_T) = jax.lax.scan(body, carry, xs_T)
  return (carry_T, ys_T), (params, carries_T, xs_T)


def _scan_cell_bwd(step, residuals, cotangents):
  params, carries_T, xs_T = residuals
  g_carry, g_ys_T = cotangents

  def body(g_next, inputs):
    c_prev, x, g_y = inputs
    _, vjp = jax.vjp(lambda c, x_t: step(params, c, x_t), c_prev, x)
    g_prev, g_x = vjp((g_next, g_y))
    # g_next is the cotangent of this step's output carry, kept for the parameter pass.
    return g_prev, (g_x, g_next)

  g_carry0, (g_xs_T, g_carries_T) = jax.lax.scan(
      body, g_carry, (carries_T, xs_T, g_ys_T), reverse=True)
  _, vjp_params = jax.vjp(lambda p: step(p, _merge_time(carries_T), _merge_time(xs_T)), params)
  (g_params,) = vjp_params((_merge_time(g_carries_T), _merge_time(g_ys_T)))
  return g_params, g_carry0, g_xs_T


scan_cell.defvjp(_scan_cell_fwd, _scan_cell_bwd)


class TKAN(nn.Module):
  """A TKAN layer over a whole sequence: [B, T, D] -> [B, T, H] (every step's output).

  Attributes: as `TKANCell`; `batched_param_grads` selects `scan_cell` (True) or a plain
  `lax.scan` (False, same values, slower gradient).
  """
  hidden: int
  n_sublayers: int = 1
  grid_size: int = 3
  order: int = 3
  grid_range: tuple[float, float] = (-1.0, 1.0)
  base_activation: str = "silu"
  batched_param_grads: bool = True

  def make_cell(self) -> TKANCell:
    """A standalone cell with this layer's settings; its parameters are `params["cell"]`."""
    return TKANCell(self.hidden, self.n_sublayers, self.grid_size, self.order,
                    self.grid_range, self.base_activation, parent=None)

  def setup(self):
    hid, m = self.hidden, self.n_sublayers
    self.input = nn.Dense(3 * hid + m * hid, precision=PRECISION,
                          bias_init=_gate_bias_init(hid), name="input")
    self.cell = TKANCell(hid, m, self.grid_size, self.order, self.grid_range,
                         self.base_activation, name="cell")

  def project(self, x_NxD: jax.Array) -> StepInputs:
    """Input projections in one matmul: [..., D] -> (gates [..., 3H], sub [..., M, H])."""
    hid, m = self.hidden, self.n_sublayers
    proj = self.input(x_NxD)
    gates_Nx3H = proj[..., :3 * hid]
    sub_NxMxH = proj[..., 3 * hid:].reshape(*proj.shape[:-1], m, hid)
    return gates_Nx3H, sub_NxMxH

  def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
    """Runs the cell over time from a zero state.

    Args:
      x_BxTxD: [B, T, D] input sequence.

    Returns:
      [B, T, H] hidden state after every step.
    """
    if x_BxTxD.ndim != 3:
      raise ValueError(f"TKAN input must be [B, T, D], got shape {x_BxTxD.shape}")
    # Time-major, so each scan step reads one contiguous [B, ...] slab.
    xs_T = self.project(jnp.swapaxes(x_BxTxD, 0, 1))
    carry = initial_carry(x_BxTxD.shape[0], self.hidden, self.n_sublayers)
    if self.is_initializing():
      self.cell(carry, jax.tree.map(lambda a: a[0], xs_T))
    params = self.cell.variables["params"]
    cell = self.make_cell()
    step = lambda p, c, x_t: cell.apply({"params": p}, c, x_t)
    if self.batched_param_grads:
      _, h_TxBxH = scan_cell(step, params, carry, xs_T)
    else:
      _, h_TxBxH = jax.lax.scan(lambda c, x_t: step(params, c, x_t), carry, xs_T)
    return jnp.swapaxes(h_TxBxH, 0, 1)
