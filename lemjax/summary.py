"""Per-strategy statistics of an evaluation and the tidy tables the report writes (CSV, parquet).

Every interval is the clustered (start-time block) bootstrap of `lemjax.stats`, with the same
resamples for every strategy so that paired comparisons stay consistent.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from lemjax import diagnostics
from lemjax import scenarios
from lemjax import stats as stats_lib

# --- Statistics -----------------------------------------------------------------------------------


def strategy_stats(values: dict, ended_early: dict, group_B, ecfg) -> dict:
  """`stats.summarize_improvement` of every strategy's per-order values (same resamples for all)."""
  g = int(np.unique(group_B).size)
  block = stats_lib.fitted_block_length(ecfg.block_length, g)
  return {
    name: stats_lib.summarize_improvement(
      v, ended_early[name], group_B, block_length=block, n_boot=ecfg.bootstrap, seed=ecfg.seed
    )[0]
    for name, v in values.items()
  }


def paired_stats(results: dict, group_B, ecfg) -> dict:
  """LEM minus every other strategy on the same orders, with clustered intervals."""
  g = int(np.unique(group_B).size)
  block = stats_lib.fitted_block_length(ecfg.block_length, g)
  lem = results["LEM"]["improvement_bps"]
  return {
    name: stats_lib.paired_difference(
      lem,
      res["improvement_bps"],
      group_B,
      block_length=block,
      n_boot=ecfg.bootstrap,
      seed=ecfg.seed,
    )
    for name, res in results.items()
    if name != "LEM"
  }


def regime_stats(results: dict, test: dict, edges, ecfg) -> tuple[list, list]:
  """Statistics and paired differences within each lookback-volatility tercile of the test orders."""
  regime_B = diagnostics.regime_of(test["lookback_vol"], edges)
  group_B = stats_lib.start_groups(test["origin"])[0]
  out_stats, out_paired = [], []
  for r in range(len(diagnostics.REGIMES)):
    sel = regime_B == r
    if sel.sum() < 2:
      raise ValueError(
        f"the {diagnostics.REGIMES[r]} volatility tercile holds {int(sel.sum())} test "
        "orders; the regime table needs at least 2"
      )
    sub = {name: {key: v[sel] for key, v in res.items()} for name, res in results.items()}
    out_stats.append(
      strategy_stats(
        {n: r_["improvement_bps"] for n, r_ in sub.items()},
        {n: r_["ended_early"] for n, r_ in sub.items()},
        group_B[sel],
        ecfg,
      )
    )
    paired = paired_stats(sub, group_B[sel], ecfg)
    out_paired.append({b: paired[b] for b in ("best_causal",) if b in paired})
  return out_stats, out_paired


def per_asset_frame(results: dict, test: dict, asset_names: tuple, ecfg) -> pl.DataFrame:
  """Mean improvement with its interval per strategy, asset, head and scenario.

  Within one asset the orders do not overlap, so the interval resamples blocks of that asset's
  consecutive orders.
  """
  frames = []
  asset_B = test["asset"]
  for a in np.unique(asset_B):
    sel = asset_B == a
    group_B, g = stats_lib.start_groups(test["origin"][sel])
    block = stats_lib.fitted_block_length(ecfg.block_length, g)
    for name, res in results.items():
      imp = res["improvement_bps"][sel]
      b, k, s = imp.shape
      iv = stats_lib.cluster_interval(
        imp.reshape(b, k * s),
        group_B,
        block_length=block,
        n_boot=ecfg.bootstrap,
        seed=ecfg.seed,
        level=0.95,
      )
      k_R, s_R = np.meshgrid(np.arange(k), np.arange(s), indexing="ij")
      frames.append(
        pl.DataFrame(
          {
            "strategy": name,
            "asset": asset_names[int(a)],
            "head": k_R.ravel(),
            "scenario": [scenarios.scenario_name(int(i)) for i in s_R.ravel()],
            "mean_bps": iv["mean"],
            "ci_lo": iv["ci_lo"],
            "ci_hi": iv["ci_hi"],
            "n": int(b),
            "n_clusters": g,
          }
        )
      )
  return pl.concat(frames)


# --- Per-order results ----------------------------------------------------------------------------


def orders_frame(test: dict, allocs: dict, results: dict, asset_names: tuple) -> pl.DataFrame:
  """One row per test order x strategy x head x scenario, with its allocation vector."""
  b, n, k, s = next(iter(allocs.values())).shape
  order_R = np.repeat(np.arange(b), k * s)
  head_R = np.tile(np.repeat(np.arange(k), s), b)
  scen_R = np.tile(np.arange(s), b * k)
  names = np.array(asset_names, dtype=object)
  side, bench, target = (
    np.array([sc[i] for sc in scenarios.SCENARIOS], dtype=object) for i in range(3)
  )
  frames = []
  for name, alloc in allocs.items():
    res = results[name]
    cols = {
      "strategy": name,
      "order": order_R.astype(np.int32),
      "asset": names[test["asset"][order_R]],
      "origin": pl.Series(test["origin"][order_R]).cast(pl.Datetime("ms", "UTC")),
      "head": head_R.astype(np.int16),
      "min_period": np.minimum(head_R + 1, n).astype(np.int16),
      "fixed_duration": head_R == n,
      "side": side[scen_R],
      "benchmark": bench[scen_R],
      "target": target[scen_R],
    }
    a_RxN = np.transpose(alloc, (0, 2, 3, 1)).reshape(b * k * s, n)
    cols.update({f"alloc_{i}": a_RxN[:, i].astype(np.float32) for i in range(n)})
    cols.update(
      {
        "price": res["price"].ravel(),
        "benchmark_price": res["benchmark"].ravel(),
        "improvement_bps": res["improvement_bps"].ravel(),
        "shortfall_bps": res["shortfall_bps"].ravel(),
        "window_end": res["window_end"].ravel().astype(np.int16),
        "ended_early": res["ended_early"].ravel(),
      }
    )
    frames.append(pl.DataFrame(cols))
  return pl.concat(frames)


def market_frame(test: dict, asset_names: tuple) -> pl.DataFrame:
  """One row per test order: its execution bars' prices (over arrival) and scaled volumes."""
  n = test["prices"].shape[1]
  cols = {
    "order": np.arange(test["prices"].shape[0], dtype=np.int32),
    "asset": np.array(asset_names, dtype=object)[test["asset"]],
    "origin": pl.Series(test["origin"]).cast(pl.Datetime("ms", "UTC")),
  }
  cols.update({f"price_{i}": test["prices"][:, i] for i in range(n)})
  cols.update({f"volume_{i}": test["volumes"][:, i] for i in range(n)})
  return pl.DataFrame(cols)


def paired_frame(paired: dict, n_ahead: int) -> pl.DataFrame:
  rows = []
  for name, d in paired.items():
    for k in range(n_ahead + 1):
      for s in range(scenarios.NUM_SCENARIOS):
        side, bench, target = scenarios.SCENARIOS[s]
        rows.append(
          {
            "baseline": name,
            "side": side,
            "benchmark": bench,
            "target": target,
            "head": k,
            "min_period": min(k + 1, n_ahead),
            "fixed_duration": k == n_ahead,
            "lem_minus_baseline_bps": float(d["mean"][k, s]),
            "ci_lo": float(d["ci_lo"][k, s]),
            "ci_hi": float(d["ci_hi"][k, s]),
            "n": int(d["n"]),
            "n_clusters": int(d["n_clusters"]),
            "n_blocks": int(d["n_blocks"]),
          }
        )
  return pl.DataFrame(rows)


def regime_frame(by_regime: list, by_regime_paired: list, edges, n_ahead: int) -> pl.DataFrame:
  frames = []
  bounds = [-np.inf, *np.asarray(edges, np.float64), np.inf]
  for r, (st, paired) in enumerate(zip(by_regime, by_regime_paired)):
    extra = {
      f"LEM minus {b}": {"mean_bps": d["mean"], "ci_lo": d["ci_lo"], "ci_hi": d["ci_hi"]}
      for b, d in paired.items()
    }
    for name, x in {**st, **extra}.items():
      k_R, s_R = np.meshgrid(
        np.arange(n_ahead + 1), np.arange(scenarios.NUM_SCENARIOS), indexing="ij"
      )
      frames.append(
        pl.DataFrame(
          {
            "regime": diagnostics.REGIMES[r],
            "vol_from_bps": bounds[r],
            "vol_to_bps": bounds[r + 1],
            "strategy": name,
            "head": k_R.ravel(),
            "scenario": [scenarios.scenario_name(int(i)) for i in s_R.ravel()],
            "mean_bps": x["mean_bps"].ravel(),
            "ci_lo": x["ci_lo"].ravel(),
            "ci_hi": x["ci_hi"].ravel(),
            "n": int(st["LEM"]["n"][0, 0]),
            "n_clusters": int(st["LEM"]["n_clusters"]),
          }
        )
      )
  return pl.concat(frames)


def study_score(results: dict, group_B, ecfg, n_ahead: int) -> dict:
  """The model-selection score: LEM minus the best causal baseline, one number with its interval.

  Per order, the improvement averaged over min periods 1..N-1 (heads 0..N-2) and every
  scenario, LEM minus best_causal, then the clustered block-bootstrap mean of that difference.

  Returns:
    dict: mean_bps, ci_lo, ci_hi, n (orders), n_clusters, heads (min periods averaged).
  """
  cells = (slice(None), slice(0, n_ahead - 1))

  def per_order(name):
    return np.asarray(results[name]["improvement_bps"], np.float64)[cells].mean(axis=(1, 2))

  d = stats_lib.paired_difference(
    per_order("LEM")[:, None],
    per_order("best_causal")[:, None],
    group_B,
    block_length=stats_lib.fitted_block_length(ecfg.block_length, int(np.max(group_B)) + 1),
    n_boot=ecfg.bootstrap,
    seed=ecfg.seed,
  )
  return {
    "mean_bps": float(d["mean"][0]),
    "ci_lo": float(d["ci_lo"][0]),
    "ci_hi": float(d["ci_hi"][0]),
    "n": int(d["n"]),
    "n_clusters": int(d["n_clusters"]),
    "min_periods": f"1..{n_ahead - 1}",
  }


def fitted_frame(fitted: dict, n_ahead: int) -> pl.DataFrame:
  """Per head and scenario: thresholds, the chosen best causal baseline and validation means."""
  k_R, s_R = np.meshgrid(np.arange(n_ahead + 1), np.arange(scenarios.NUM_SCENARIOS), indexing="ij")
  cols = {
    "head": k_R.ravel(),
    "scenario": [scenarios.scenario_name(int(i)) for i in s_R.ravel()],
    "optional_stopping_theta_bps": np.asarray(fitted["theta_KxS"]).ravel(),
  }
  if "vol_theta_KxS" in fitted:
    cols["vol_stopping_theta"] = np.asarray(fitted["vol_theta_KxS"]).ravel()
  if "best_causal_choice" in fitted:
    cols["best_causal"] = np.asarray(fitted["best_causal_choice"]).astype(str).ravel()
  if "lem_head_map_KxS" in fitted:
    cols["lem_serving_head"] = np.asarray(fitted["lem_head_map_KxS"]).ravel()
  for name, means in fitted.get("val_means", {}).items():
    cols[f"val_mean_bps_{name}"] = np.asarray(means).ravel()
  return pl.DataFrame(cols)
