"""How much of an order's coming price path can a causal policy predict? A linear probe.

The end-date option aside, one schedule beats another on both sides at once only by knowing
something about the coming prices: a buy front-loads before a rise, a sell before a fall. This
probe fits ridge regressions, on the training split's orders, of each execution bar's VWAP
relative to the arrival price (bps; `WindowDataset.batch`'s prices) on what a policy knows when
the order arrives: every feature of the last lookback bar, the returns over the last 5 and 20
bars, the lookback volatility and the high-low half-spread. It reports the out-of-sample R^2 on
another split (validation by default) per execution bar and for the horizon's mean price, with a
moving-block bootstrap interval over start times (orders that start together share one path).

An R^2 at or below zero says the lookback carries no linear signal about the path, so a schedule
can only earn through the end-date option, the part a causal stopping rule earns too. The probe is
linear; the LEM is the non-linear check (its fixed-duration head against the uniform schedule).

  python -m lemjax.predictability --config=experiments/djia_multiday.py [--split=val] [--out=p.json]
"""

from __future__ import annotations

import sys

import numpy as np

from lemjax import stats as stats_lib
from lemjax import study
from lemjax.data import features

RETURN_SPANS = (5, 20)  # bars of the summed lookback returns
PREDICTOR_NAMES = (
  *(f"last_bar_{name}" for name in features.FEATURE_NAMES),
  *(f"return_last_{n}_bars_bps" for n in RETURN_SPANS),
  "lookback_vol",
  "lookback_half_spread",
)
_RETURN = features.FEATURE_NAMES.index("return_bps")


def predictors(batch: dict, lookback: int) -> np.ndarray:
  """What a policy knows at an order's arrival, [B, P] float64 (`PREDICTOR_NAMES`).

  Reads only the lookback bars (inputs at positions < L, lookback_vol, lookback_half_spread).
  """
  inputs_BxTxF = np.asarray(batch["inputs"], np.float64)
  if inputs_BxTxF.ndim != 3 or inputs_BxTxF.shape[1] < lookback:
    raise ValueError(f"inputs.shape={inputs_BxTxF.shape}, expected [B, T >= L={lookback}, F]")
  past_BxLxF = inputs_BxTxF[:, :lookback]
  returns = [past_BxLxF[:, -min(n, lookback) :, _RETURN].sum(1) for n in RETURN_SPANS]
  return np.column_stack(
    [
      past_BxLxF[:, -1],
      *returns,
      np.asarray(batch["lookback_vol"], np.float64),
      np.asarray(batch["lookback_half_spread"], np.float64),
    ]
  )


def targets(batch: dict) -> np.ndarray:
  """Each execution bar's VWAP over the arrival price, their mean, and the path's slope, in bps.

  Returns [B, N + 2]: bars 0..N-1, the horizon mean, and the mean of the second half of the bars
  minus the first half's (N >= 2; the middle bar of an odd N in neither). The slope is what a
  schedule judged against the horizon's VWAP or TWAP can earn from: front-loading a buy gains
  in proportion to it, and a sell loses the same, whatever the level of the path.
  """
  path_BxN = 1e4 * (np.asarray(batch["prices"], np.float64) - 1.0)
  half = path_BxN.shape[1] // 2
  slope_B = path_BxN[:, -half:].mean(1) - path_BxN[:, :half].mean(1) if half else 0 * path_BxN[:, 0]
  return np.column_stack([path_BxN, path_BxN.mean(1), slope_B])


def gather(dataset, max_windows: int, seed: int = 0, chunk: int = 4096):
  """(X, Y, origin) of up to `max_windows` windows of a split (a random subset when larger)."""
  m = dataset.num_windows
  if m == 0:
    raise ValueError(f"split {dataset.name!r} has no windows")
  idx = np.arange(m)
  if max_windows and m > max_windows:
    idx = np.sort(np.random.default_rng(seed).choice(m, size=max_windows, replace=False))
  xs, ys, origins = [], [], []
  for start in range(0, idx.size, chunk):
    batch = dataset.batch(idx[start : start + chunk])
    xs.append(predictors(batch, dataset.lookback))
    ys.append(targets(batch))
    origins.append(batch["origin"])
  return np.concatenate(xs), np.concatenate(ys), np.concatenate(origins)


def fit_ridge(x_BxP, y_BxM, alpha: float = 1e-3) -> dict:
  """Ridge regression on standardised predictors; alpha is per order (penalty alpha * B)."""
  x, y = np.asarray(x_BxP, np.float64), np.asarray(y_BxM, np.float64)
  if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] < 2:
    raise ValueError(f"x.shape={x.shape} and y.shape={y.shape} need the same B >= 2 rows")
  if not (np.isfinite(x).all() and np.isfinite(y).all()):
    raise ValueError("predictors or targets hold NaN or inf")
  mean_P, scale_P = x.mean(0), x.std(0)
  scale_P = np.where(scale_P > 1e-12, scale_P, 1.0)  # a constant column (e.g. the bar length)
  z = (x - mean_P) / scale_P
  y_mean = y.mean(0)
  gram = z.T @ z + alpha * x.shape[0] * np.eye(x.shape[1])
  return {
    "mean": mean_P,
    "scale": scale_P,
    "coef": np.linalg.solve(gram, z.T @ (y - y_mean)),
    "intercept": y_mean,
  }


def predict(model: dict, x_BxP) -> np.ndarray:
  z = (np.asarray(x_BxP, np.float64) - model["mean"]) / model["scale"]
  return model["intercept"] + z @ model["coef"]


def out_of_sample_r2(
  y_BxM, pred_BxM, base_M, origin_B, *, block_length=5, n_boot=2000, seed=0, level=0.95
) -> dict:
  """1 - MSE(prediction) / MSE(training mean) per column, with a block-bootstrap interval.

  Resamples start-time groups (`stats.block_bootstrap_means`) and takes the ratio of the two
  resampled mean squared errors, so the interval respects the orders' shared market moves.
  """
  y = np.asarray(y_BxM, np.float64)
  e_model = (y - pred_BxM) ** 2
  e_base = (y - np.asarray(base_M, np.float64)) ** 2
  group_B, n_clusters = stats_lib.start_groups(origin_B)
  r2_RxM = 1.0 - stats_lib.block_bootstrap_ratios(
    e_model, e_base, group_B, block_length=block_length, n_boot=n_boot, seed=seed
  )
  tail = (1.0 - level) / 2 * 100
  lo, hi = np.percentile(r2_RxM, [tail, 100 - tail], axis=0)
  return {
    "r2": 1.0 - e_model.mean(0) / e_base.mean(0),
    "ci_lo": lo,
    "ci_hi": hi,
    "n_clusters": n_clusters,
  }


TILT_SCALES_BPS = (5.0, 10.0, 20.0, 40.0, 80.0, 160.0)


def tilt_gain(tilt_B, y_BxM) -> np.ndarray:
  """Side-neutral gain over TWAP (bps) of a linear tilt of the uniform schedule, per order.

  The schedule trades (1 + t (c - s) / c) / N at bar s (c = (N - 1) / 2; t in [-1, 1], t = 1
  front-loads a buy from 2/N down to 0); a sell takes the mirror tilt -t. Each side then gains
  the same over TWAP, t / N * sum_s (s - c) / c * path_s: this is that gain. y_BxM holds the
  path in its first N columns (`targets`).
  """
  t = np.clip(np.asarray(tilt_B, np.float64), -1.0, 1.0)
  n = y_BxM.shape[1] - 2
  lin_N = (np.arange(n) - (n - 1) / 2) / max((n - 1) / 2, 1)
  return t / n * (np.asarray(y_BxM, np.float64)[:, :n] * lin_N).sum(1)


def probe(config, split: str = "val", max_windows: int = 50_000, alpha: float = 1e-3, seed=0):
  """Fits on the training split and scores on `split` ("val" or "test"); a JSON-ready dict."""
  from lemjax import experiment  # noqa: PLC0415 (loads the data layer's config only here)

  train_ds, val_ds, test_ds, _, _ = experiment.load_data(config)
  scored = {"val": val_ds, "test": test_ds}.get(split)
  if scored is None:
    raise ValueError(f"split={split!r}: expected 'val' or 'test'")
  x_tr, y_tr, _ = gather(train_ds, max_windows, seed)
  x_ev, y_ev, origin = gather(scored, max_windows, seed)
  model = fit_ridge(x_tr, y_tr, alpha)
  pred = predict(model, x_ev)
  r2 = out_of_sample_r2(y_ev, pred, model["intercept"], origin, seed=seed)
  pred_tr = predict(model, x_tr)
  in_sample = 1.0 - ((y_tr - pred_tr) ** 2).mean(0) / y_tr.var(0)
  # A schedule that acts on the prediction: tilt = predicted slope / scale, the scale chosen on
  # the training orders, scored on the other split.
  slope_tr, slope_ev = pred_tr[:, -1], pred[:, -1]
  train_gain = {k: tilt_gain(slope_tr / k, y_tr).mean() for k in TILT_SCALES_BPS}
  scale = max(train_gain, key=train_gain.get)
  gain_B = tilt_gain(slope_ev / scale, y_ev)
  group_B, _ = stats_lib.start_groups(origin)
  gain = stats_lib.cluster_interval(
    gain_B[:, None], group_B, block_length=5, n_boot=2000, seed=seed, level=0.95
  )
  names = [f"bar {s}" for s in range(y_ev.shape[1] - 2)] + ["horizon mean", "slope"]
  std = y_ev.std(0)
  rows = [
    {
      "target": name,
      "r2": float(r2["r2"][j]),
      "ci_lo": float(r2["ci_lo"][j]),
      "ci_hi": float(r2["ci_hi"][j]),
      "train_r2": float(in_sample[j]),
      "std_bps": float(std[j]),
      "predictable_std_bps": float(np.sqrt(max(r2["r2"][j], 0.0)) * std[j]),
    }
    for j, name in enumerate(names)
  ]
  return {
    "experiment": config.name,
    "split": split,
    "train_orders": int(x_tr.shape[0]),
    "orders": int(x_ev.shape[0]),
    "n_clusters": r2["n_clusters"],
    "alpha": alpha,
    "predictors": list(PREDICTOR_NAMES),
    "rows": rows,
    "tilt": {
      "scale_bps": scale,
      "train_gain_bps": float(train_gain[scale]),
      "gain_bps": float(gain["mean"][0]),
      "ci_lo": float(gain["ci_lo"][0]),
      "ci_hi": float(gain["ci_hi"][0]),
      "mean_abs_tilt": float(np.abs(np.clip(slope_ev / scale, -1, 1)).mean()),
      "foresight_gain_bps": float(tilt_gain(np.sign(y_ev[:, -1]), y_ev).mean()),
    },
  }


def markdown(result: dict) -> str:
  lines = [
    f"Linear probe, {result['experiment']}: fitted on {result['train_orders']} training orders, "
    f"scored on {result['orders']} {result['split']} orders in {result['n_clusters']} start-time "
    "clusters (95% moving-block bootstrap intervals).",
    "",
    "| target (VWAP over arrival, bps) | out-of-sample R^2 | training R^2 | std, bps | "
    "predictable std, bps |",
    "|---|---|---|---|---|",
  ]
  for r in result["rows"]:
    lines.append(
      f"| {r['target']} | {r['r2']:+.4f} [{r['ci_lo']:+.4f}, {r['ci_hi']:+.4f}] | "
      f"{r['train_r2']:+.4f} | {r['std_bps']:.1f} | {r['predictable_std_bps']:.2f} |"
    )
  t = result["tilt"]
  lines += [
    "",
    f"A linear tilt of the uniform schedule by the predicted slope (scale {t['scale_bps']:g} bps, "
    f"chosen on training orders; mean |tilt| {t['mean_abs_tilt']:.2f}) gains "
    f"{t['gain_bps']:+.2f} [{t['ci_lo']:+.2f}, {t['ci_hi']:+.2f}] bps over TWAP on each side "
    f"({t['train_gain_bps']:+.2f} on the training orders; the same tilt with the true slope's "
    f"sign: {t['foresight_gain_bps']:+.2f}).",
  ]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
  import argparse  # noqa: PLC0415 (command line only)

  from lemjax import config as config_lib  # noqa: PLC0415

  parser = argparse.ArgumentParser(
    prog="python -m lemjax.predictability", description=__doc__.split("\n")[0]
  )
  parser.add_argument(
    "--config", required=True, help="experiment file (path.py or path.py:variant)"
  )
  parser.add_argument("--split", default="val", choices=("val", "test"))
  parser.add_argument("--max_windows", type=int, default=50_000, help="per split; 0 = all")
  parser.add_argument("--alpha", type=float, default=1e-3, help="ridge penalty per order")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="", help="also write the result as JSON here")
  args = parser.parse_args(argv)
  config = config_lib.load_experiment(args.config)
  result = probe(config, args.split, args.max_windows, args.alpha, args.seed)
  return study.show(result, markdown(result), args.out)


if __name__ == "__main__":
  main(sys.argv[1:])
