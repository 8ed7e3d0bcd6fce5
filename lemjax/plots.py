"""Report figures (PNG, matplotlib Agg): improvement vs min period, allocation curves, distributions."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lemjax import scenarios  # noqa: E402


def save_panels(fig, axes, ylabel: str, path: str) -> str:
  """Finishes a row of panels sharing a y axis (label on the first, legend on the last), saves it."""
  axes[0].set_ylabel(ylabel)
  axes[-1].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def improvement_vs_min_period(path: str, all_stats: dict, s_buy: int, s_sell: int) -> str:
  """Mean improvement with its 95% interval per min period, one line per causal strategy.

  The oracle is left out: its gains are an order of magnitude larger and would flatten the
  lines that matter (its numbers are in the tables).
  """
  fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
  for ax, s in zip(axes, (s_buy, s_sell)):
    for name, st in all_stats.items():
      if name == "oracle":
        continue
      k = np.arange(st["mean_bps"].shape[0])
      mean, lo, hi = st["mean_bps"][:, s], st["ci_lo"][:, s], st["ci_hi"][:, s]
      ax.errorbar(k + 1, mean, yerr=[mean - lo, hi - mean], marker="o", ms=3, capsize=2, label=name)
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_title(f"{scenarios.scenario_name(s)} (oracle omitted)")
    ax.set_xlabel("min period (bars); last point = fixed duration")
  return save_panels(fig, axes, "mean improvement (bps, positive = better)", path)


def allocation_curves(path: str, test: dict, allocs: dict, s: int, k: int, n_orders: int) -> str:
  """A few orders: market volume share per bar against the allocations of each causal strategy."""
  n_orders = max(1, min(n_orders, test["prices"].shape[0]))
  picks = np.linspace(0, test["prices"].shape[0] - 1, n_orders).astype(int)
  n = test["prices"].shape[1]
  fig, axes = plt.subplots(n_orders, 2, figsize=(11, 2.6 * n_orders), squeeze=False)
  for row, i in enumerate(picks):
    vol = test["volumes"][i] / max(float(test["volumes"][i].sum()), 1e-12)
    for col, head in enumerate((k, n)):
      ax = axes[row, col]
      ax.bar(np.arange(n), vol, color="lightgrey", label="market volume share")
      for name in ("LEM", "vwap_profile", "optional_stopping"):
        if name in allocs:
          ax.plot(np.arange(n), allocs[name][i, :, head, s], marker="o", ms=3, label=name)
      title = "fixed duration" if head == n else f"min period {head + 1}"
      ax.set_title(f"order {i}, {scenarios.scenario_name(s)}, {title}", fontsize=9)
      ax.set_xlabel("execution bar")
  axes[0, 0].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def improvement_distribution(path: str, results: dict, s: int, k: int) -> str:
  """Histogram of per-order improvements at head k for every strategy."""
  fig, ax = plt.subplots(figsize=(7, 4))
  values = {name: res["improvement_bps"][:, k, s] for name, res in results.items()}
  finite = np.concatenate([v[np.isfinite(v)] for v in values.values()])
  lo, hi = np.percentile(finite, [1, 99]) if finite.size else (-1.0, 1.0)
  bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 50)
  for name, v in values.items():
    ax.hist(np.clip(v, bins[0], bins[-1]), bins=bins, histtype="step", label=name)
  ax.axvline(0.0, color="grey", lw=0.8)
  ax.set_xlabel(f"improvement (bps), {scenarios.scenario_name(s)}, head {k}")
  ax.set_ylabel("orders")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_plots(
  workdir: str,
  all_stats: dict,
  test: dict,
  allocs: dict,
  results: dict,
  s_buy: int,
  s_sell: int,
  k_sel: int,
  n_orders: int,
) -> list[str]:
  """All report figures; returns their paths."""
  return [
    improvement_vs_min_period(
      os.path.join(workdir, "improvement_vs_min_period.png"), all_stats, s_buy, s_sell
    ),
    allocation_curves(
      os.path.join(workdir, "allocation_curves.png"), test, allocs, s_buy, k_sel, n_orders
    ),
    improvement_distribution(
      os.path.join(workdir, "improvement_distribution.png"), results, s_buy, k_sel
    ),
  ]


def bench_scaling(path: str, scaling: dict) -> str:
  """Compile time and samples/s against N and against B (`lemjax.bench --scaling`), with the
  `lems` package's where it was timed."""
  fig, axes = plt.subplots(2, 2, figsize=(10, 7))
  for col, (axis, label) in enumerate((("n_ahead", "N (execution bars)"), ("batch_size", "B"))):
    rows = scaling[axis]
    x = [r[axis] for r in rows]
    for row, (key, ylabel) in enumerate(
      (("compile_s", "compile s"), ("samples_per_s", "samples/s"))
    ):
      ax = axes[row, col]
      ax.plot(x, [r[key] for r in rows], marker="o", label="lemjax")
      if all("peer" in r for r in rows):
        ax.plot(x, [r["peer"][key] for r in rows], marker="s", label="lems")
      ax.set_xscale("log", base=2)
      if key == "samples_per_s":  # the two packages may lie orders of magnitude apart
        ax.set_yscale("log")
      ax.set_xticks(x, [str(v) for v in x])
      ax.set_xlabel(label)
      ax.set_ylabel(ylabel)
      ax.legend(fontsize=8)
  fixed = scaling["n_ahead"][0]
  fig.suptitle(
    f"L={fixed['lookback']}, H={fixed['hidden']}: N at B={fixed['batch_size']}, B at "
    f"N={scaling['batch_size'][0]['n_ahead']}"
  )
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
