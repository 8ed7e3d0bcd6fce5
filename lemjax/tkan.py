"""Temporal KAN: an LSTM-like cell whose output gate comes from recurrent KAN sub-layers."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from lemjax import precision as precision_lib
from lemjax.kan import KANLinear
from lemjax.kan import _bspline_bases
from lemjax.kan import activation
from lemjax.kan import uniform_grid

# carry = (h_BxH, c_BxH, sub_BxMxH); per-step inputs = (gates_Bx3H, sub_BxMxH), pre-projected.
Carry = tuple[jax.Array, jax.Array, jax.Array]
StepInputs = tuple[jax.Array, jax.Array]


def _gate_bias_init(hidden: int):
  """Zero bias except +1 on the forget gate, so the cell starts by remembering."""

  def init(key, shape, dtype=jnp.float32):
    del key
    return jnp.zeros(shape, dtype).at[hidden : 2 * hidden].set(1.0)

  return init


def initial_carry(batch: int, hidden: int, n_sublayers: int) -> Carry:
  """Zero TKAN state: (h [B, H], c [B, H], sub [B, M, H])."""
  zeros_BxH = jnp.zeros((batch, hidden), jnp.float32)
  return zeros_BxH, zeros_BxH, jnp.zeros((batch, n_sublayers, hidden), jnp.float32)


def _tail(z_gates_Bx3H, c_BxH, z_out_BxH, out_BxMxH, sub_BxMxH, w_out_MxH, w_state_MxH):
  """Elementwise end of a step: LSTM gates, cell state, output gate, sub-state mix."""
  i_BxH, f_BxH, g_BxH = jnp.split(z_gates_Bx3H, 3, axis=-1)
  c_BxH = nn.sigmoid(f_BxH) * c_BxH + nn.sigmoid(i_BxH) * jnp.tanh(g_BxH)
  h_BxH = nn.sigmoid(z_out_BxH) * jnp.tanh(c_BxH)
  # Learned elementwise mix of the new KAN output and the previous sub-state.
  sub_BxMxH = w_out_MxH[None] * out_BxMxH + w_state_MxH[None] * sub_BxMxH
  return h_BxH, c_BxH, sub_BxMxH


class TKANCell(nn.Module):
  """One TKAN time step: `(carry, inputs_t) -> (carry, h_t)`.

  The input-dependent parts of the gates arrive pre-projected (see `TKAN.project`), so the
  step only does the carry-dependent work.

  Attributes:
    hidden: H, width of h, c and of every KAN sub-layer.
    n_sublayers: M, KAN sub-layers feeding the output gate.
    grid_size, order, grid_range, base_activation: KANLinear settings.
    precision: matmul policy (lemjax/precision.py).
  """

  hidden: int
  n_sublayers: int = 1
  grid_size: int = 3
  order: int = 3
  grid_range: tuple[float, float] = (-1.0, 1.0)
  base_activation: str = "silu"
  precision: str = "highest"

  @nn.compact
  def __call__(self, carry: Carry, inputs_t: StepInputs) -> tuple[Carry, jax.Array]:
    h_BxH, c_BxH, sub_BxMxH = carry
    gates_Bx3H, sub_in_BxMxH = inputs_t
    hid, m, policy = self.hidden, self.n_sublayers, self.precision
    # Pre-activations of the input/forget gates and the cell candidate.
    z_gates_Bx3H = gates_Bx3H + precision_lib.dense(
      policy,
      3 * hid,
      use_bias=False,
      kernel_init=nn.initializers.orthogonal(),
      name="recurrent",
    )(h_BxH)
    # Each KAN sub-layer reads the input and its own previous sub-state.
    w_sub_MxHxH = self.param("sub_recurrent", nn.initializers.orthogonal(), (m, hid, hid))
    z_sub_BxMxH = sub_in_BxMxH + precision_lib.einsum(
      policy, "bmh,mhk->bmk", sub_BxMxH, w_sub_MxHxH
    )
    out_BxMxH = jnp.stack(
      [
        KANLinear(
          hid,
          self.grid_size,
          self.order,
          self.grid_range,
          self.base_activation,
          policy,
          name=f"kan_{j}",
        )(z_sub_BxMxH[:, j])
        for j in range(m)
      ],
      axis=1,
    )
    w_out_MxH = self.param("sub_mix_out", nn.initializers.constant(0.5), (m, hid))
    w_state_MxH = self.param("sub_mix_state", nn.initializers.constant(0.5), (m, hid))
    # Output gate pre-activation from the aggregated sub-layer outputs.
    z_out_BxH = precision_lib.dense(policy, hid, name="output_gate")(
      out_BxMxH.reshape(out_BxMxH.shape[0], m * hid)
    )
    h_BxH, c_BxH, sub_BxMxH = _tail(
      z_gates_Bx3H, c_BxH, z_out_BxH, out_BxMxH, sub_BxMxH, w_out_MxH, w_state_MxH
    )
    return (h_BxH, c_BxH, sub_BxMxH), h_BxH


def tkan_step(
  cell: TKANCell, params: Any, carry: Carry, inputs_t: StepInputs
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


# ---------------------------------------------------------------------------------------
# Fast path: the same step as TKANCell written on its parameter tree, with a hand-written
# reverse pass. Only carry/input cotangents run inside the reverse scan; all weight
# gradients are big [T * B]-row matmuls after it (T small matmuls per weight otherwise).
# ---------------------------------------------------------------------------------------
# (M, knots, order, activation name, matmul policy)
Settings = tuple[int, tuple[float, ...], int, str, str]


def _dot(a, b, settings: Settings):
  return precision_lib.dot(settings[4], a, b)


def _einsum(subscripts: str, a, b, settings: Settings):
  return precision_lib.einsum(settings[4], subscripts, a, b)


def _kan_inputs(p_kan: Any, z_NxH: jax.Array, settings: Settings):
  """KANLinear's front: layer norm, then the inputs of its two matmuls (act(x), basis)."""
  _, knots, order, act_name, _ = settings
  xn_NxH = nn.LayerNorm(parent=None).apply({"params": p_kan["norm"]}, z_NxH)
  basis_NxCxH = jnp.stack(_bspline_bases(xn_NxH, np.asarray(knots), order), axis=-2)
  return activation(act_name)(xn_NxH), basis_NxCxH.reshape(z_NxH.shape[0], -1)


def _step(p: Any, carry: Carry, inputs_t: StepInputs, settings: Settings):
  """TKANCell's step on its parameter tree; also returns what the reverse pass needs."""
  h_BxH, c_BxH, sub_BxMxH = carry
  gates_Bx3H, sub_in_BxMxH = inputs_t
  m = settings[0]
  z_gates = gates_Bx3H + _dot(h_BxH, p["recurrent"]["kernel"], settings)
  z_sub = sub_in_BxMxH + _einsum("bmh,mhk->bmk", sub_BxMxH, p["sub_recurrent"], settings)
  outs = []
  for j in range(m):
    pk = p[f"kan_{j}"]
    act_BxH, basis_BxCH = _kan_inputs(pk, z_sub[:, j], settings)
    base = _dot(act_BxH, pk["base"]["kernel"], settings) + pk["base"]["bias"][None]
    outs.append(base + _dot(basis_BxCH, pk["spline"]["kernel"], settings))
  out_BxMxH = jnp.stack(outs, axis=1)
  z_out = (
    _dot(out_BxMxH.reshape(out_BxMxH.shape[0], -1), p["output_gate"]["kernel"], settings)
    + p["output_gate"]["bias"][None]
  )
  new = _tail(z_gates, c_BxH, z_out, out_BxMxH, sub_BxMxH, p["sub_mix_out"], p["sub_mix_state"])
  return new, (h_BxH, c_BxH, sub_BxMxH, z_gates, z_sub, z_out, out_BxMxH)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def fast_scan(
  settings: Settings, params: Any, carry: Carry, xs_T: StepInputs
) -> tuple[Carry, jax.Array]:
  """Scan of the TKAN step over time-major inputs; values equal a `lax.scan` of TKANCell.

  Args:
    settings: (M, knots, order, activation name, matmul policy), static.
    params: a TKANCell parameter tree.
    carry: initial (h [B, H], c [B, H], sub [B, M, H]).
    xs_T: pre-projected inputs (gates [T, B, 3H], sub [T, B, M, H]).

  Returns:
    (final carry, h [T, B, H]).
  """
  return _fast_scan_fwd(settings, params, carry, xs_T)[0]


def _fast_scan_fwd(settings, params, carry, xs_T):
  def body(c, x_t):
    new, res = _step(params, c, x_t, settings)
    return new, (new[0], res)

  carry_T, (h_TxBxH, res_T) = jax.lax.scan(body, carry, xs_T)
  return (carry_T, h_TxBxH), (params, res_T)


def _fast_scan_bwd(settings, residuals, cotangents):
  params, res_T = residuals
  (g_h, g_c, g_sub), g_h_TxBxH = cotangents
  m = settings[0]
  kernels = {
    j: (params[f"kan_{j}"]["base"]["kernel"], params[f"kan_{j}"]["spline"]["kernel"])
    for j in range(m)
  }

  def body(g_carry, inputs):
    (h_prev, c_prev, sub_prev, z_gates, z_sub, z_out, out), g_y = inputs
    g_h, g_c, g_sub = g_carry
    _, tail_vjp = jax.vjp(
      _tail, z_gates, c_prev, z_out, out, sub_prev, params["sub_mix_out"], params["sub_mix_state"]
    )
    g_zg, g_c, g_zo, g_out, g_sub, g_mix_out, g_mix_state = tail_vjp((g_h + g_y, g_c, g_sub))
    g_out = g_out + _dot(g_zo, params["output_gate"]["kernel"].T, settings).reshape(g_out.shape)
    g_zs, g_norms = [], []
    for j in range(m):
      base_k, spline_k = kernels[j]
      _, kan_vjp = jax.vjp(
        lambda z, pk: _kan_inputs(pk, z, settings), z_sub[:, j], params[f"kan_{j}"]
      )
      g_z, g_pk = kan_vjp(
        (_dot(g_out[:, j], base_k.T, settings), _dot(g_out[:, j], spline_k.T, settings))
      )
      g_zs.append(g_z)
      g_norms.append(g_pk["norm"])
    g_zs = jnp.stack(g_zs, axis=1)
    g_sub = g_sub + _einsum("bmk,mhk->bmh", g_zs, params["sub_recurrent"], settings)
    g_h = _dot(g_zg, params["recurrent"]["kernel"].T, settings)
    return (g_h, g_c, g_sub), (g_zg, g_zs, g_zo, g_out, g_mix_out, g_mix_state, g_norms)

  g_carry0, g_T = jax.lax.scan(body, (g_h, g_c, g_sub), (res_T, g_h_TxBxH), reverse=True)
  g_zg, g_zs, g_zo, g_out, g_mix_out, g_mix_state, g_norms = g_T
  g_params = _weight_grads(params, settings, res_T, g_zg, g_zs, g_zo, g_out)
  g_params["sub_mix_out"] = g_mix_out.sum(0)
  g_params["sub_mix_state"] = g_mix_state.sum(0)
  for j in range(m):
    g_params[f"kan_{j}"]["norm"] = jax.tree.map(lambda a: a.sum(0), g_norms[j])
  return g_params, g_carry0, (g_zg, g_zs)


def _weight_grads(params, settings, res_T, g_zg, g_zs, g_zo, g_out):
  """Gradients of every matmul weight from all T * B rows at once."""
  h_prev, _, sub_prev, _, z_sub, _, out = res_T
  m = settings[0]
  rows = lambda a: a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])
  h_prev, sub_prev, z_sub, out = rows(h_prev), rows(sub_prev), rows(z_sub), rows(out)
  g_zg, g_zs, g_zo, g_out = rows(g_zg), rows(g_zs), rows(g_zo), rows(g_out)
  grads = {
    "recurrent": {"kernel": _dot(h_prev.T, g_zg, settings)},
    "sub_recurrent": _einsum("nmh,nmk->mhk", sub_prev, g_zs, settings),
    "output_gate": {
      "kernel": _dot(out.reshape(out.shape[0], -1).T, g_zo, settings),
      "bias": g_zo.sum(0),
    },
  }
  for j in range(m):
    act, basis = _kan_inputs(params[f"kan_{j}"], z_sub[:, j], settings)
    grads[f"kan_{j}"] = {
      "base": {"kernel": _dot(act.T, g_out[:, j], settings), "bias": g_out[:, j].sum(0)},
      "spline": {"kernel": _dot(basis.T, g_out[:, j], settings)},
    }
  return grads


fast_scan.defvjp(_fast_scan_fwd, _fast_scan_bwd)


class TKAN(nn.Module):
  """A TKAN layer over a whole sequence: [B, T, D] -> [B, T, H] (every step's output).

  Attributes: as `TKANCell`; `fast_grad` selects `fast_scan` (True) or a plain `lax.scan`
  of the linen cell (False; same values, slower gradient).
  """

  hidden: int
  n_sublayers: int = 1
  grid_size: int = 3
  order: int = 3
  grid_range: tuple[float, float] = (-1.0, 1.0)
  base_activation: str = "silu"
  fast_grad: bool = True
  precision: str = "highest"

  def make_cell(self) -> TKANCell:
    """A standalone cell with this layer's settings; its parameters are `params["cell"]`."""
    return TKANCell(
      self.hidden,
      self.n_sublayers,
      self.grid_size,
      self.order,
      self.grid_range,
      self.base_activation,
      self.precision,
      parent=None,
    )

  def setup(self):
    hid, m = self.hidden, self.n_sublayers
    self.input = precision_lib.dense(
      self.precision, 3 * hid + m * hid, bias_init=_gate_bias_init(hid), name="input"
    )
    self.cell = TKANCell(
      hid,
      m,
      self.grid_size,
      self.order,
      self.grid_range,
      self.base_activation,
      self.precision,
      name="cell",
    )

  def project(self, x_NxD: jax.Array) -> StepInputs:
    """Input projections in one matmul: [..., D] -> (gates [..., 3H], sub [..., M, H])."""
    hid, m = self.hidden, self.n_sublayers
    proj = self.input(x_NxD)
    gates_Nx3H = proj[..., : 3 * hid]
    sub_NxMxH = proj[..., 3 * hid :].reshape(*proj.shape[:-1], m, hid)
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
    carry = initial_carry(x_BxTxD.shape[0], self.hidden, self.n_sublayers)
    return self.scan(carry, x_BxTxD)[1]

  def scan(self, carry: Carry, x_BxTxD: jax.Array) -> tuple[Carry, jax.Array]:
    """Runs the cell over time from `carry`: (final carry, [B, T, H] hidden state of every step).

    A sequence split in two gives the same states: `scan(scan(c, x1)[0], x2)`.
    """
    # Time-major, so each scan step reads one contiguous [B, ...] slab.
    xs_T = self.project(jnp.swapaxes(x_BxTxD, 0, 1))
    if self.is_initializing():
      self.cell(carry, jax.tree.map(lambda a: a[0], xs_T))
    params = self.cell.variables["params"]
    if self.fast_grad:
      knots = tuple(float(k) for k in uniform_grid(self.grid_size, self.order, self.grid_range))
      settings = (self.n_sublayers, knots, self.order, self.base_activation, self.precision)
      carry, h_TxBxH = fast_scan(settings, params, carry, xs_T)
    else:
      cell = self.make_cell()
      step = lambda c, x_t: cell.apply({"params": params}, c, x_t)
      carry, h_TxBxH = jax.lax.scan(step, carry, xs_T)
    return carry, jnp.swapaxes(h_TxBxH, 0, 1)
