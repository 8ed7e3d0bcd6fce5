"""Where to choose the served heads: a split-half check on the validation split only.

The test report chooses its served heads (lemjax/heads.py) on validation orders, a short stretch
of market; the validation report chooses them on training orders, many more start times but
in-sample for the model. This check compares the two on validation data alone: the validation
orders are split at their median start time, the first half (V1) plays the selection sample, and
the served heads chosen by best mean on V1 alone ("today") and on the training orders and V1
together ("candidate") are scored on the validation report's non-overlapping orders that start in
the second half (V2), which begin at least `gap` after V1's last start (docs/study.md, "Choosing
the served heads on more orders").

  python -m lemjax.head_choice --exp=djia_multiday --workdir=runs/djia_multiday_seed0 --seed=0 \
      --out=runs/head_choice/djia0.npz
  python -m lemjax.head_choice --pool=runs/head_choice/djia0.npz,runs/head_choice/djia1.npz
"""

from __future__ import annotations

import numpy as np

from lemjax import config as config_lib
from lemjax import diagnostics
from lemjax import evaluate
from lemjax import heads
from lemjax import stats as stats_lib

RULES = ("today", "candidate")


def split_half(
  imp_sel_BxKxS, sel_origin_B, imp_tune_BxKxS, imp_scored_BxKxS, scored_origin_B, gap: int, **boot
) -> dict:
  """Both head maps, chosen on V1 (and the training orders), scored on V2.

  Args:
    imp_sel_BxKxS, sel_origin_B: every own head's improvement (bps) on the validation selection
      orders, and their start times (int).
    imp_tune_BxKxS: the same on the training orders.
    imp_scored_BxKxS, scored_origin_B: the same on the validation report's orders.
    gap: V1 keeps selection orders starting before median(scored starts) - gap; V2 the scored
      orders starting at or after that median.
    boot: block_length, n_boot, seed of the break intervals (`diagnostics.head_health`).

  Returns:
    {"origin": V2 start times, "v1_orders", "tune_orders", and per rule r in RULES: r_map (the
    [K, S] head map), r_B (V2 per-order mean of the served flexible heads over all scenarios),
    r_breaks (flagged served monotonicity breaks on V2), r_holm and r_chance
    (`diagnostics.break_calibration`), r_worst (worst served head minus the next, bps)}.
  """
  scored_origin = np.asarray(scored_origin_B, np.int64)
  mid = np.median(scored_origin)
  v1 = np.asarray(sel_origin_B, np.int64) < mid - gap
  v2 = scored_origin >= mid
  if not v1.any() or not v2.any():
    raise ValueError(
      f"the split at {mid} (gap {gap}) leaves {int(v1.sum())} selection and {int(v2.sum())} "
      "scored orders; both halves need some"
    )
  sel = np.asarray(imp_sel_BxKxS, np.float64)[v1]
  tune = np.asarray(imp_tune_BxKxS, np.float64)
  scored = np.asarray(imp_scored_BxKxS, np.float64)[v2]
  maps = {
    "today": heads.nested_head_map(sel.mean(0)),
    "candidate": heads.nested_head_map(np.concatenate([tune, sel]).mean(0)),
  }
  group, _ = stats_lib.start_groups(scored_origin[v2])
  n, s = scored.shape[1] - 1, scored.shape[2]
  out = {"origin": scored_origin[v2], "v1_orders": int(v1.sum()), "tune_orders": tune.shape[0]}
  for rule, head_map in maps.items():
    served = scored[:, head_map, np.arange(s)[None, :]]
    no_early = np.zeros(served.shape[1:])
    health = diagnostics.head_health(served, np.zeros_like(served), no_early, group, **boot)
    calibration = diagnostics.break_calibration(health)
    out |= {
      f"{rule}_map": head_map,
      f"{rule}_B": served[:, :n].mean(axis=(1, 2)),
      f"{rule}_breaks": int(health["monotonicity_break"].sum()),
      f"{rule}_holm": calibration["holm_breaks"],
      f"{rule}_chance": calibration["chance_breaks"],
      f"{rule}_worst": float(np.nanmin(health["minus_next_bps"].to_numpy())),
    }
  return out


def pool(results: list[dict], *, block_length: int = 5, n_boot: int = 2000, seed: int = 0) -> dict:
  """Candidate minus today over seeds (per order, averaged over the seeds) with a clustered
  interval over V2's start times, and the breaks summed over the seeds.

  Raises:
    ValueError when the seeds scored different orders.
  """
  origin = np.asarray(results[0]["origin"])
  for r in results[1:]:
    if not np.array_equal(np.asarray(r["origin"]), origin):
      raise ValueError("the runs scored different V2 orders: pool seeds of one experiment")
  diff_B = np.mean([np.asarray(r["candidate_B"]) - np.asarray(r["today_B"]) for r in results], 0)
  group, g = stats_lib.start_groups(origin)
  ci = stats_lib.cluster_interval(
    diff_B[:, None], group, block_length=block_length, n_boot=n_boot, seed=seed, level=0.95
  )
  return {
    "mean": float(ci["mean"][0]),
    "ci_lo": float(ci["ci_lo"][0]),
    "ci_hi": float(ci["ci_hi"][0]),
    "orders": int(diff_B.size),
    "start_times": g,
    **{f"{rule}_breaks": sum(int(r[f"{rule}_breaks"]) for r in results) for rule in RULES},
  }


def run(exp: str, workdir: str, seed: int) -> dict:
  """`split_half` for one trained run of experiments/<exp>.py (its eval settings)."""
  config = config_lib.load_experiment(f"experiments/{exp}.py")
  config.seed = seed
  loaded = evaluate.load_run(config, workdir)
  train_ds, val_ds, params = loaded.train_ds, loaded.val_ds, loaded.params
  ecfg, model = loaded.cfgs["eval"], loaded.cfgs["model"]
  n = model.n_ahead
  tune = evaluate.gather(train_ds, evaluate.spread_indices(train_ds.num_windows, ecfg.tune_orders))
  sel = evaluate.gather(val_ds, evaluate.spread_indices(val_ds.num_windows, ecfg.val_orders))
  scored = evaluate.gather(val_ds, evaluate.select_orders(val_ds, n, ecfg))

  def improvement(batch):
    alloc = evaluate.lem_allocations(
      params, model, batch, ecfg.r_min, ecfg.r_max, ecfg.batch_size, None, ecfg.ensemble_rule
    )
    return np.asarray(evaluate.score(alloc, batch["prices"], batch["volumes"]), np.float64)

  return split_half(
    improvement(sel),
    sel["origin"],
    improvement(tune),
    improvement(scored),
    scored["origin"],
    gap=2 * n * val_ds.store.step_ms,
    block_length=ecfg.block_length,
    n_boot=ecfg.bootstrap,
    seed=ecfg.seed,
  )


def main(argv: list[str] | None = None) -> dict:
  import argparse  # noqa: PLC0415 (command line only)

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--exp", help="experiment name (experiments/<exp>.py)")
  parser.add_argument("--workdir", help="the trained run")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", help=".npz written with the run's result")
  parser.add_argument("--pool", help="comma-separated .npz results of one experiment's seeds")
  args = parser.parse_args(argv)
  if args.pool:
    result = pool([dict(np.load(p)) for p in args.pool.split(",")])
    print(
      f"candidate minus today over {len(args.pool.split(','))} seeds, {result['orders']} orders, "
      f"{result['start_times']} start times: {result['mean']:+.3f} [{result['ci_lo']:+.3f}, "
      f"{result['ci_hi']:+.3f}] bps; breaks today {result['today_breaks']}, candidate "
      f"{result['candidate_breaks']}"
    )
    return result
  if not (args.exp and args.workdir and args.out):
    parser.error("--exp, --workdir and --out are required (or --pool)")
  result = run(args.exp, args.workdir, args.seed)
  np.savez(args.out, **result)
  for rule in RULES:
    print(
      f"{rule}: V2 mean of the served flexible heads {result[f'{rule}_B'].mean():+.2f} bps, "
      f"breaks {result[f'{rule}_breaks']} (chance {result[f'{rule}_chance']:.2f}, Holm "
      f"{result[f'{rule}_holm']}), worst head minus next {result[f'{rule}_worst']:+.2f}"
    )
  return result


if __name__ == "__main__":
  main()
