"""Online execution: a trained LEM on live orders, one bar at a time, with the batched model's decisions.

The batched model (lemjax/model.py) reads a whole window at once; a live order sees one bar at
a time and keeps a small fixed-shape carry of all that its next decision needs (carry.py).

  policy = load_policy("runs/crypto_intraday")      # policy.py: params + static bar facts
  carry = start(policy, order, history_bars)        # host side: checks, history features
  child = next_child(carry)                         # shares or cash to trade in bar 0
  live = check_bar(policy, carry, bar)              # bars.py: ValueError naming a bad field
  carry, out = step_jit(policy, carry, live)        # step.py, pure: jit, vmap (`step_many`)

The recurrent pieces share one contract, `step(params, carry, x) -> (carry, y)` with the static
settings bound first: the TKAN cell (`tkan.tkan_step(cell, ...)`), the encoder
(`encoder.step(config, params, carry, x_BxF)`) and the order as a whole (`step(policy, carry,
bar)`: the Policy holds the parameters and binds the settings). The allocator's carry advances
by `allocation.decide` then `allocation.advance`.
`Executor` (executor.py) wraps these for one order; `save_carry`/`load_carry` (saving.py) let a
restarted process continue an order; `python -m lemjax.online.replay` replays a bar file.
"""

from lemjax.online.bars import Bar
from lemjax.online.bars import LiveBar
from lemjax.online.bars import check_bar
from lemjax.online.carry import Carry
from lemjax.online.carry import StepOutput
from lemjax.online.carry import next_child
from lemjax.online.carry import stack
from lemjax.online.executor import Executor
from lemjax.online.orders import Order
from lemjax.online.policy import Policy
from lemjax.online.policy import init_policy
from lemjax.online.policy import load_policy
from lemjax.online.saving import carry_from_dict
from lemjax.online.saving import carry_to_dict
from lemjax.online.saving import load_carry
from lemjax.online.saving import save_carry

# The pure `step` itself stays `lemjax.online.step.step`, so that `online.step` names one thing.
from lemjax.online.step import output
from lemjax.online.step import start
from lemjax.online.step import step_jit
from lemjax.online.step import step_many

__all__ = [
  "Bar",
  "Carry",
  "Executor",
  "LiveBar",
  "Order",
  "Policy",
  "StepOutput",
  "carry_from_dict",
  "carry_to_dict",
  "check_bar",
  "init_policy",
  "load_carry",
  "load_policy",
  "next_child",
  "output",
  "save_carry",
  "stack",
  "start",
  "step_jit",
  "step_many",
]
