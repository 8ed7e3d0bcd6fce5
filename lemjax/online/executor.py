"""`Executor`: one live order, its bars checked on the host and stepped by the jitted step."""

from __future__ import annotations

import jax
import numpy as np

from lemjax.online import bars as bars_lib
from lemjax.online import saving
from lemjax.online import step as step_lib
from lemjax.online.carry import Carry
from lemjax.online.carry import StepOutput
from lemjax.online.orders import Order
from lemjax.online.policy import Policy


class Executor:
  """One live order: `on_bar` checks each bar, then runs the jitted step; the carry is `self.carry`."""

  def __init__(self, policy: Policy, carry: Carry):
    self.policy, self.carry = policy, carry

  @classmethod
  def start(cls, policy: Policy, order: Order, history_bars) -> Executor:
    return cls(policy, step_lib.start(policy, order, history_bars))

  @classmethod
  def load(cls, policy: Policy, path: str) -> Executor:
    return cls(policy, saving.load_carry(policy, path))

  @property
  def status(self) -> StepOutput:
    return jax.tree.map(np.asarray, step_lib.output(self.carry, self.policy.costs.enabled))

  def on_bar(self, bar) -> StepOutput:
    """Accounts for the bar that just closed; returns the next child order and running prices.

    Raises ValueError (from `check_bar`) with the carry unchanged for a bad bar.
    """
    live = bars_lib.check_bar(self.policy, self.carry, bar)
    carry, out = step_lib.step_jit(self.policy, self.carry, live)
    self.carry = carry
    return jax.tree.map(np.asarray, out)

  def save(self, path: str) -> None:
    saving.save_carry(path, self.carry)
