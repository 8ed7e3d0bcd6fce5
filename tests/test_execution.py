"""Tests for lemjax/execution.py and lemjax/execute.py: online decisions equal the batched model's."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from experiments import crypto_intraday
from lemjax import checkpoint as ckpt_lib
from lemjax import execute
from lemjax import execution as ex
from lemjax import objectives
from lemjax import scenarios
from lemjax import train
from lemjax.data import synthetic, tables, windows

# A failed orbax restore (the shape-mismatch case) leaves coroutines that are reported at exit.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

HOUR = 3_600_000
N_BARS = 420
T0S = np.array([200, 260, 330, 390])           # window origins (rows of bar t0)
R_MIN = np.array([0.0, 0.05, 0.1, 0.0], np.float32)
R_MAX = np.array([1.0, 0.5, 0.3, 0.6], np.float32)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A work directory with a randomly initialised smoke-size checkpoint, bars, and batched allocations."""
  config = crypto_intraday.get_config("smoke")
  cfgs = train.resolve_configs(config, 8)
  model = cfgs["model"]
  span = tables.interval_ms(config.data.volume_window)
  policy0 = ex.init_policy(model, HOUR, span, seed=1)
  workdir = str(tmp_path_factory.mktemp("run"))
  train.write_run_files(workdir, config, cfgs, {"interval": "1h"}, "Data source: test")
  tx = train.make_optimizer(cfgs["train"])
  arrays = {"step": jnp.int32(8), "params": policy0.params, "opt_state": jax.jit(tx.init)(policy0.params),
            "rng": jax.random.PRNGKey(0)}
  checkpointer = ckpt_lib.Checkpointer(workdir)
  checkpointer.save(8, arrays, {"sampler": {}}, best=True)
  checkpointer.close()
  frame = synthetic.synthetic_market("crypto", 1, N_BARS, seed=5)["SYN0"]
  store = windows.BarStore.build({"SYN0": frame}, HOUR, span)
  batch = windows.WindowDataset(store, np.zeros(T0S.size), T0S, model.lookback, model.n_ahead).batch(
      np.arange(T0S.size))
  forward = jax.jit(train.build_model(model).apply)
  alloc = np.asarray(forward({"params": policy0.params}, batch["inputs"], R_MIN, R_MAX,
                             batch["prices"], batch["volumes"]))
  cols = {c: frame[c].to_numpy() for c in ("time", "close", "volume", "vwap")}
  return {"workdir": workdir, "policy0": policy0, "frame": frame, "cols": cols, "batch": batch,
          "alloc": alloc, "forward": forward, "config": config}


@pytest.fixture(scope="module")
def policy(run):
  return ex.load_policy(run["workdir"])


def _history(run, t0):
  return {c: v[:t0] for c, v in run["cols"].items()}


def _bar(run, row):
  return {c: v[row] for c, v in run["cols"].items()}


def _order(sc, head, n, r_min=0.0, r_max=1.0, size=7.0):
  side, bench, target = scenarios.SCENARIOS[sc]
  fixed = head == n
  return ex.Order(side, size, target, bench, min_bars=None if fixed else head + 1, r_min=float(r_min),
                  r_max=float(r_max), fixed_duration=fixed)


# ----------------------------------------------------------------------------- policy


def test_load_policy_restores_params_and_bar_length(run, policy):
  assert policy.n_ahead == 4 and policy.lookback == 16 and policy.step_ms == HOUR
  assert policy.volume_window_ms == 7 * 24 * HOUR
  for a, b in zip(jax.tree.leaves(policy.params), jax.tree.leaves(run["policy0"].params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert ex.load_policy(os.path.join(run["workdir"], "checkpoints", "best")).source == policy.source


def test_load_policy_errors(run, tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    ex.load_policy(str(tmp_path))
  saved = json.load(open(os.path.join(run["workdir"], "config.json")))
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(FileNotFoundError, match="no best checkpoint"):
    ex.load_policy(str(tmp_path))
  os.symlink(os.path.join(run["workdir"], "checkpoints"), tmp_path / "checkpoints")
  for edit, match in ((lambda m: m["encoder"].update(colour=1), "model.encoder.colour"),
                      (lambda m: m["allocator"].pop("width"), "model.allocator.width"),
                      (lambda m: m["encoder"].update(hidden=16), "parameter|does not match")):
    bad = json.loads(json.dumps(saved))
    edit(bad["resolved"]["model"])
    (tmp_path / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=match):
      ex.load_policy(str(tmp_path))


# ----------------------------------------------------------------------------- orders


@pytest.mark.parametrize("kwargs, field", [
    (dict(side="hold"), "side"), (dict(target="shares"), "target"), (dict(benchmark="close"), "benchmark"),
    (dict(size=-1.0), "size"), (dict(size=float("nan")), "size"), (dict(min_bars=0), "min_bars"),
    (dict(min_bars=5), "min_bars"), (dict(min_bars=2.5), "min_bars"), (dict(min_bars=None), "min_bars"),
    (dict(max_bars=6), "max_bars"), (dict(r_min=0.5), "r_min"), (dict(r_max=0.1), "r_max"),
    (dict(fixed_duration=True, min_bars=2), "min_bars")])
def test_order_errors_name_the_field(kwargs, field):
  base = dict(side="buy", size=1.0, min_bars=2)
  with pytest.raises(ValueError, match=field):
    ex.Order(**{**base, **kwargs}).check(4)


def test_order_heads():
  assert ex.Order("sell", 3.0, "notional", "twap", min_bars=1).check(4) == (0, 7)
  assert ex.Order("buy", 3.0, fixed_duration=True).check(4) == (4, 0)
  assert ex.Order("buy", 3.0, min_bars=4, max_bars=4).check(4) == (3, 0)


# ----------------------------------------------------------------------------- equality with the batch


def _all_orders(run, policy):
  """Every scenario x heads {0, 1, N-1, N} x window, started; with their (window, head, scenario)."""
  n = policy.n_ahead
  states, keys = [], []
  for i, t0 in enumerate(T0S):
    for sc in range(scenarios.NUM_SCENARIOS):
      for head in (0, 1, n - 1, n):
        states.append(ex.start(policy, _order(sc, head, n, R_MIN[i], R_MAX[i]), _history(run, t0)))
        keys.append((i, head, sc))
  return states, keys


def test_vmapped_orders_match_batched_allocations(run, policy):
  n = policy.n_ahead
  states, keys = _all_orders(run, policy)
  state = ex.stack(states)
  idx = np.array([k[0] for k in keys])
  got = np.zeros((len(keys), n), np.float32)
  got[:, 0] = np.asarray(ex.next_child(state)[1])
  done = np.zeros(len(keys), bool)
  for s in range(n):
    live = ex.check_bar(policy, state, {c: v[T0S[idx] + s] for c, v in run["cols"].items()})
    state, out = ex.step_many(policy, state, live)
    if s + 1 < n:
      got[:, s + 1] = np.where(done, 0.0, np.asarray(out.fraction))
    done = np.asarray(out.done)
  want = np.stack([run["alloc"][i, :, head, sc] for i, head, sc in keys])
  np.testing.assert_allclose(got, want, atol=2e-6)
  assert done.all()
  # Every order completes: the fractions sum to 1 and children are fraction x size.
  np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
  summary = objectives.execution_summary(jnp.asarray(run["alloc"]), jnp.asarray(run["batch"]["prices"]),
                                         jnp.asarray(run["batch"]["volumes"]))
  arrival = run["cols"]["close"][T0S - 1]
  for name in ("price", "benchmark"):
    want = np.array([summary[name][i, head, sc] * arrival[i] for i, head, sc in keys])
    np.testing.assert_allclose(np.asarray(getattr(out, name)), want, rtol=2e-6)
  want = np.array([summary["improvement_bps"][i, head, sc] for i, head, sc in keys])
  np.testing.assert_allclose(np.asarray(out.improvement_bps), want, atol=2e-2)


def test_single_order_loop_features_and_early_end(run, policy):
  """One order bar by bar (Executor): the encoder buffer equals the batch's features."""
  n, i = policy.n_ahead, 1
  exe = ex.Executor.start(policy, _order(0, n, n, R_MIN[i], R_MAX[i]), _history(run, T0S[i]))
  inputs = run["batch"]["inputs"][i]
  lb = policy.lookback
  np.testing.assert_array_equal(np.asarray(exe.state.inputs_TxF)[:lb], inputs[:lb])
  assert not np.asarray(exe.state.inputs_TxF)[lb:].any()  # nothing from the future
  fractions = [float(exe.status.fraction)]
  for s in range(n):
    out = exe.on_bar(_bar(run, T0S[i] + s))
    fractions.append(float(out.fraction))
    assert int(out.bars) == s + 1 and bool(out.done) == (s == n - 1)
    np.testing.assert_allclose(float(out.child), 7.0 * fractions[-1], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(exe.state.inputs_TxF), inputs, rtol=1e-6, atol=1e-5)
  np.testing.assert_allclose(fractions[:n], run["alloc"][i, :, n, 0], atol=2e-6)
  with pytest.raises(ValueError, match="already complete"):
    exe.on_bar(_bar(run, T0S[i] + n))


def test_decisions_ignore_future_bars(run, policy):
  """Decisions 0..s come before bar s exists; a different bar s changes only what follows it."""
  n, t0 = policy.n_ahead, T0S[0]
  state = ex.start(policy, _order(1, 1, n), _history(run, t0))
  first = [float(ex.next_child(state)[1])]
  state, out = ex.step_jit(policy, state, ex.check_bar(policy, state, _bar(run, t0)))
  first.append(float(out.fraction))
  np.testing.assert_allclose(first, run["alloc"][0, :2, 1, 1], atol=2e-6)
  other = dict(_bar(run, t0 + 1), close=_bar(run, t0 + 1)["close"] * 1.5, volume=1e9)
  _, out_other = ex.step_jit(policy, state, ex.check_bar(policy, state, other))
  _, out_same = ex.step_jit(policy, state, ex.check_bar(policy, state, _bar(run, t0 + 1)))
  np.testing.assert_allclose(float(out_same.fraction), run["alloc"][0, 2, 1, 1], atol=2e-6)
  assert float(out_other.fraction) != float(out_same.fraction)


# ----------------------------------------------------------------------------- bad input, saving


@pytest.mark.parametrize("change, match", [
    (dict(dt=-HOUR), "'time'.*not after"), (dict(dt=0), "'time'.*not after"),
    (dict(dt=HOUR // 2), "different length"), (dict(dt=2 * HOUR), "skips bars"),
    (dict(volume=float("nan")), "'volume'"), (dict(volume=-1.0), "'volume'"),
    (dict(close=float("nan")), "'close'"), (dict(vwap=-3.0), "'vwap'"),
    (dict(length_ms=HOUR // 4), "length")])
def test_bad_bar_raises_and_leaves_state(run, policy, change, match):
  t0 = T0S[2]
  exe = ex.Executor.start(policy, _order(2, 1, policy.n_ahead), _history(run, t0))
  before = ex.state_to_dict(exe.state)
  good = _bar(run, t0)
  bad = dict(good, **{k: v for k, v in change.items() if k != "dt"})
  if "dt" in change:  # open time relative to the previous bar's
    bad["time"] = run["cols"]["time"][t0 - 1] + change["dt"]
  with pytest.raises(ValueError, match=match):
    exe.on_bar(bad)
  after = ex.state_to_dict(exe.state)
  assert all(np.array_equal(before[k], after[k]) for k in before)
  out = exe.on_bar(good)  # the corrected bar goes through
  assert int(out.bars) == 1


def test_history_too_short(run, policy):
  with pytest.raises(ValueError, match="history_bars"):
    ex.start(policy, _order(0, 0, 4), {c: v[100:130] for c, v in run["cols"].items()})
  hist = _history(run, T0S[0])
  hist["volume"] = hist["volume"].copy()
  hist["volume"][50] = np.nan
  with pytest.raises(ValueError, match="history_bars index 50.*'volume'"):
    ex.start(policy, _order(0, 0, 4), hist)


def test_save_and_restore_continues_the_order(run, policy, tmp_path):
  t0, n = T0S[3], policy.n_ahead
  exe = ex.Executor.start(policy, _order(5, 2, n, R_MIN[3], R_MAX[3]), _history(run, t0))
  exe.on_bar(_bar(run, t0))
  exe.save(str(tmp_path / "order.npz"))
  resumed = ex.Executor.load(policy, str(tmp_path / "order.npz"))
  for s in range(1, n):
    a, b = exe.on_bar(_bar(run, t0 + s)), resumed.on_bar(_bar(run, t0 + s))
    assert jax.tree.map(float, a) == jax.tree.map(float, b)
  bad = ex.state_to_dict(exe.state)
  bad[".volume_W"] = bad[".volume_W"][:3]
  with pytest.raises(ValueError, match="volume_W"):
    ex.state_from_dict(policy, bad)


def test_step_latency_helper(policy):
  for n_orders in (1, 3):
    stats = ex.step_latency(policy, n_orders=n_orders, repeats=2)
    assert stats["n_orders"] == n_orders and stats["median_s"] > 0


# ----------------------------------------------------------------------------- CLI


def test_cli_matches_objectives_on_the_window(run, policy, tmp_path, capsys):
  frame = run["frame"]
  kline = pl.DataFrame({
      "open_time": frame["time"], "open": frame["open"], "high": frame["high"], "low": frame["low"],
      "close": frame["close"], "volume": frame["volume"], "close_time": frame["time"] + HOUR - 1,
      "quote_volume": frame["notional"], "count": 1, "taker_buy_volume": 0.0,
      "taker_buy_quote_volume": 0.0, "ignore": 0})
  path = tmp_path / "SYN0-1h.csv"
  kline.write_csv(path)
  table = execute.load_bars(str(path), HOUR)
  t0 = int(T0S[1])
  result = execute.main(["--workdir", run["workdir"], "--bars", str(path), "--side", "sell",
                         "--notional", "5000", "--benchmark", "twap", "--min-bars", "2",
                         "--r-max", "0.5", "--start", tables.ms_to_iso(frame["time"][t0])])
  printed = capsys.readouterr().out
  # The evaluation's numbers for this order: batched model on the data layer's window, objectives.
  store = windows.BarStore.build({"SYN0": table}, HOUR, policy.volume_window_ms)
  batch = windows.WindowDataset(store, np.zeros(1), np.array([t0]), policy.lookback,
                                policy.n_ahead).batch(np.zeros(T0S.size, np.int64))  # compiled size
  alloc = run["forward"]({"params": policy.params}, batch["inputs"], np.zeros(T0S.size, np.float32),
                         np.full(T0S.size, 0.5, np.float32), batch["prices"], batch["volumes"])
  summary = objectives.execution_summary(alloc, jnp.asarray(batch["prices"]), jnp.asarray(batch["volumes"]))
  sc, arrival = scenarios.scenario_index("sell", "twap", "notional"), table["close"][t0 - 1]
  final = result["final"]
  np.testing.assert_allclose(final["price"], float(summary["price"][0, 1, sc]) * arrival, rtol=1e-6)
  np.testing.assert_allclose(final["benchmark"], float(summary["benchmark"][0, 1, sc]) * arrival, rtol=1e-6)
  np.testing.assert_allclose(final["improvement_bps"], float(summary["improvement_bps"][0, 1, sc]), atol=1e-2)
  np.testing.assert_allclose(result["running"]["improvement_bps"], final["improvement_bps"], atol=1e-2)
  assert f"{final['improvement_bps']:+.4f} bps" in printed and "achieved price" in printed
  np.testing.assert_allclose(sum(r["child"] for r in result["schedule"]), 5000.0, rtol=1e-5)
