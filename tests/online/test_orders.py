"""Tests for lemjax/online/orders.py: order terms map to (head, scenario); bad fields are named."""

import pytest

from lemjax import online


@pytest.mark.parametrize(
  "kwargs, field",
  [
    (dict(side="hold"), "side"),
    (dict(target="shares"), "target"),
    (dict(benchmark="close"), "benchmark"),
    (dict(size=-1.0), "size"),
    (dict(size=float("nan")), "size"),
    (dict(min_bars=0), "min_bars"),
    (dict(min_bars=5), "min_bars"),
    (dict(min_bars=2.5), "min_bars"),
    (dict(min_bars=None), "min_bars"),
    (dict(max_bars=6), "max_bars"),
    (dict(r_min=0.5), "r_min"),
    (dict(r_max=0.1), "r_max"),
    (dict(fixed_duration=True, min_bars=2), "min_bars"),
  ],
)
def test_order_errors_name_the_field(kwargs, field):
  base = dict(side="buy", size=1.0, min_bars=2)
  with pytest.raises(ValueError, match=field):
    online.Order(**{**base, **kwargs}).check(4)


def test_order_heads():
  assert online.Order("sell", 3.0, "notional", "twap", min_bars=1).check(4) == (0, 7)
  assert online.Order("buy", 3.0, fixed_duration=True).check(4) == (4, 0)
  assert online.Order("buy", 3.0, min_bars=4, max_bars=4).check(4) == (3, 0)
