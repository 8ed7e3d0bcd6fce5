"""End-to-end evaluation on the smoke config: report, CSVs, plots, per-order results, other data."""

import dataclasses
import json
import os
import pathlib
import shutil
import sys

import jax
import numpy as np
import polars as pl
import polars.selectors as cs
import pytest
from absl import flags

from experiments import crypto_intraday
from lemjax import config as config_lib
from lemjax import diagnostics
from lemjax import evaluate as evaluate_lib
from lemjax import experiment as experiment_lib
from lemjax import heads
from lemjax import main as main_lib
from lemjax import markdown
from lemjax import objectives
from lemjax import report as report_lib
from lemjax import scenarios
from lemjax import study
from lemjax import train as train_lib
from lemjax import workdir as workdir_lib
from lemjax.data import synthetic_market

N = 4  # the smoke config's horizon
K, S = N + 1, scenarios.NUM_SCENARIOS
CSVS = (
  "stats.csv",
  "headline.csv",
  "paired_differences.csv",
  "per_asset.csv",
  "regimes.csv",
  "head_health.csv",
)
PLOTS = ("improvement_vs_min_period.png", "allocation_curves.png", "improvement_distribution.png")


def smoke_config():
  config = crypto_intraday.get_config("smoke")
  config.train.progress = False
  return config


def run_main(*args):
  """Runs the command-line entry point in this process (compiled functions are reused)."""
  argv = ["lemjax.main", *args]
  saved = sys.argv
  sys.argv = argv  # config_flags reads `--config.*` overrides from sys.argv
  try:
    for name in [n for n in flags.FLAGS if n.startswith("config.")]:
      delattr(flags.FLAGS, name)  # override flags of an earlier parse would be defined twice
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    main_lib.main(argv[:1])
  finally:
    sys.argv = saved


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("eval") / "run")
  train_lib.train_and_evaluate(smoke_config(), path)
  run_main(
    "--mode=eval",
    "--config=experiments/crypto_intraday.py:smoke",
    f"--workdir={path}",
    "--config.eval.bootstrap=300",
  )
  return path


def test_report_tables_and_plots_exist_with_finite_numbers(workdir):
  for name in CSVS:
    frame = pl.read_csv(os.path.join(workdir, name))
    numbers = frame.select(cs.numeric() - cs.starts_with("minus_next", "vol_")).to_numpy()
    assert frame.height > 0 and np.isfinite(numbers.astype(np.float64)).all(), name
  for name in PLOTS:
    with open(os.path.join(workdir, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
  stats = pl.read_csv(os.path.join(workdir, "stats.csv"))
  assert set(stats["strategy"]) == set(evaluate_lib.STRATEGIES)
  assert stats.height == len(evaluate_lib.STRATEGIES) * K * S
  assert (stats["ci_lo"] <= stats["mean_bps"]).all() and (stats["mean_bps"] <= stats["ci_hi"]).all()
  # Tracking columns: RMSE >= MAD >= |mean|, and RMSE^2 = mean^2 + (B-1)/B std^2.
  assert (stats["rmse_bps"] >= stats["mad_bps"] - 1e-9).all()
  assert (stats["mad_bps"] >= stats["mean_bps"].abs() - 1e-9).all()
  n = stats["n"].to_numpy()
  np.testing.assert_allclose(
    stats["rmse_bps"] ** 2,
    stats["mean_bps"] ** 2 + (n - 1) / n * stats["std_bps"] ** 2,
    rtol=1e-6,
    atol=1e-6,
  )
  assert (stats["n_clusters"] >= 2).all() and (stats["n_clusters"] <= stats["n"]).all()
  paired = pl.read_csv(os.path.join(workdir, "paired_differences.csv"))
  assert (
    "best_causal" in set(paired["baseline"])
    and (paired["n_clusters"] == stats["n_clusters"][0]).all()
  )


def test_report_states_its_provenance_and_sign_convention(workdir):
  with open(os.path.join(workdir, "report.md")) as f:
    text = f.read()
  assert text.startswith("Data source: SYNTHETIC")
  for needle in (
    "Checkpoint: best at step",
    "seed 0",
    "Splits: train",
    "## Headline",
    "## Paired differences",
    "## Share of orders ended early",
    "## Per asset",
    "## Tracking and shortfall at the fixed-duration head",
    "## Regimes",
    "## Head health",
    "## The best causal baseline per min period",
    "start-time clusters",
  ):
    assert needle in text, needle
  assert text.count("## Table 1 - ") == len(evaluate_lib.STRATEGIES)
  # The head-health section calibrates its breaks against chance, from head_health.csv.
  served = diagnostics.health_rows(pl.read_csv(os.path.join(workdir, "head_health.csv")))
  assert markdown.break_calibration_line(served) in text
  # The headline and every Table 1/2 state the sign convention.
  assert text.count(report_lib.SIGN_CONVENTION) >= text.count("## Table ") + 1


def test_orders_file_reproduces_the_report(workdir):
  orders = pl.read_parquet(os.path.join(workdir, "orders.parquet"))
  market = pl.read_parquet(os.path.join(workdir, "market.parquet"))
  n_orders = market.height
  assert orders.height == n_orders * len(evaluate_lib.STRATEGIES) * K * S
  # A report number recomputed from the per-order rows.
  stats = pl.read_csv(os.path.join(workdir, "stats.csv"))
  key = dict(strategy="LEM", side="sell", benchmark="vwap", target="quantity", head=1)
  rows = orders.filter(*[pl.col(k) == v for k, v in key.items()])
  reported = stats.filter(*[pl.col(k) == v for k, v in key.items()])["mean_bps"][0]
  assert rows.height == n_orders
  np.testing.assert_allclose(rows["improvement_bps"].mean(), reported, rtol=1e-5, atol=1e-6)
  # The improvement column recomputed from the allocation and the market bars.
  lem = orders.filter(pl.col("strategy") == "LEM").sort(["order", "head"], maintain_order=True)
  alloc = lem.select([f"alloc_{i}" for i in range(N)]).to_numpy().reshape(n_orders, K, S, N)
  prices = market.sort("order").select([f"price_{i}" for i in range(N)]).to_numpy()
  volumes = market.sort("order").select([f"volume_{i}" for i in range(N)]).to_numpy()
  imp = np.asarray(objectives.improvement_bps(np.moveaxis(alloc, 3, 1), prices, volumes))
  # float32 accounting: prices near 1 carry ~6e-8 relative rounding, i.e. ~1e-3 bps.
  np.testing.assert_allclose(imp.ravel(), lem["improvement_bps"].to_numpy(), atol=5e-3)
  # Shortfall vs the arrival price: prices are over arrival, so side x (P - 1) x 1e4.
  side = np.where(lem["side"].to_numpy() == "buy", 1.0, -1.0)
  np.testing.assert_allclose(
    lem["shortfall_bps"].to_numpy(),
    side * (lem["price"].to_numpy() - 1) * 1e4,
    rtol=1e-5,
    atol=1e-3,
  )


def test_lem_is_served_by_the_validated_head_map(workdir):
  """The report's LEM: each min period served by the head head_map.json chose on validation."""
  with open(os.path.join(workdir, heads.HEAD_MAP_FILE)) as f:
    saved = json.load(f)
  head_map = heads.load_head_map(workdir, K, S, saved["checkpoint_step"])
  assert saved["rule"] == heads.RULE_TEXT["best"]  # the default eval.head_rule
  np.testing.assert_array_equal(head_map, heads.nested_head_map(saved["val_mean_bps_KxS"]))
  fitted = pl.read_csv(os.path.join(workdir, "baselines_fitted.csv"))
  np.testing.assert_array_equal(fitted["lem_serving_head"].to_numpy(), head_map.ravel())
  health = pl.read_csv(os.path.join(workdir, "head_health.csv"))
  served = health.filter(pl.col("heads") == "served").sort(["head", "scenario"])
  own = health.filter(pl.col("heads") == "own")
  assert served.height == own.height == (K - 1) * S
  names = [scenarios.scenario_name(i) for i in range(S)]
  for row in served.iter_rows(named=True):
    k, sc = row["head"], names.index(row["scenario"])
    source = own.filter(
      (pl.col("head") == head_map[k, sc]) & (pl.col("scenario") == row["scenario"])
    )
    np.testing.assert_allclose(row["mean_bps"], source["mean_bps"][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(row["ended_early"], source["ended_early"][0], atol=1e-9)


def test_study_score_is_lem_minus_best_causal_over_flexible_heads(workdir):
  with open(os.path.join(workdir, "study_score.json")) as f:
    score = json.load(f)
  orders = pl.read_parquet(os.path.join(workdir, "orders.parquet"))
  flexible = orders.filter(pl.col("head") < N - 1)
  per_order = flexible.group_by(["strategy", "order"]).agg(pl.col("improvement_bps").mean())
  wide = per_order.pivot(on="strategy", index="order", values="improvement_bps")
  want = (wide["LEM"] - wide["best_causal"]).mean()
  np.testing.assert_allclose(score["mean_bps"], want, atol=1e-3)
  assert score["ci_lo"] <= score["mean_bps"] <= score["ci_hi"] and score["split"] == "test"
  # The candidates' comparison tool (lemjax/study.py) reads the same score back per order.
  np.testing.assert_allclose(study.per_order_scores(workdir)["score_bps"].mean(), want, atol=1e-4)
  assert "**Study score** (study_score.json)" in pathlib.Path(workdir, "report.md").read_text()


def test_validation_split_report_leaves_the_test_report_and_head_map_alone(workdir):
  head_map = pathlib.Path(workdir, heads.HEAD_MAP_FILE)
  before = head_map.read_text(), os.path.getmtime(os.path.join(workdir, "report.md"))
  run_main(
    "--mode=eval",
    "--config=experiments/crypto_intraday.py:smoke",
    f"--workdir={workdir}",
    "--config.eval.bootstrap=100",
    "--config.eval.split=val",
    "--config.eval.head_rule=chain",
  )
  out = os.path.join(workdir, evaluate_lib.VAL_REPORT_DIR)
  # The one-standard-error rule: a min period keeps its own head only for a higher mean (on the
  # orders the map was chosen on) than the head serving the next minimum, else takes that head.
  with open(os.path.join(out, heads.HEAD_MAP_FILE)) as f:
    saved = json.load(f)
  assert saved["rule"] == heads.RULE_TEXT["chain"]
  chain, means = np.asarray(saved["head_map_KxS"]), np.asarray(saved["val_mean_bps_KxS"])
  assert (chain[K - 2] == K - 2).all() and (chain[K - 1] == K - 1).all()
  for k in range(K - 2):
    nxt = chain[k + 1]
    assert ((chain[k] == k) | (chain[k] == nxt)).all()
    kept = chain[k] == k
    assert (means[k][kept] > means[nxt, np.arange(S)][kept] - 1e-4).all()  # 4-decimal rounding
  text = pathlib.Path(out, "report.md").read_text()
  assert "VALIDATION SPLIT" in text and "Val orders:" in text
  assert f"eval.head_rule=chain; head_map.json): {heads.RULE_TEXT['chain']}" in text
  with open(os.path.join(out, "study_score.json")) as f:
    assert json.load(f)["split"] == "val"
  market = pl.read_parquet(os.path.join(out, "market.parquet"))
  test_market = pl.read_parquet(os.path.join(workdir, "market.parquet"))
  assert market["origin"].max() < test_market["origin"].min()  # validation precedes test
  assert (head_map.read_text(), os.path.getmtime(os.path.join(workdir, "report.md"))) == before
  with pytest.raises(ValueError, match="eval.split='train'"):
    run_main(
      "--mode=eval",
      "--config=experiments/crypto_intraday.py:smoke",
      f"--workdir={workdir}",
      "--config.eval.split=train",
      "--traceback",
    )
  with pytest.raises(ValueError, match="eval.head_rule='worst'"):
    run_main(
      "--mode=eval",
      "--config=experiments/crypto_intraday.py:smoke",
      f"--workdir={workdir}",
      "--config.eval.split=val",
      "--config.eval.head_rule=worst",
      "--traceback",
    )


def test_oracle_bounds_every_strategy(workdir):
  orders = pl.read_parquet(os.path.join(workdir, "orders.parquet"))
  imp = orders.pivot(
    on="strategy", index=["order", "head", "side", "benchmark", "target"], values="improvement_bps"
  )
  for name in evaluate_lib.STRATEGIES:
    assert (imp["oracle"] >= imp[name] - 0.05).all(), name


def test_missing_checkpoint_names_directory_and_command(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"no best checkpoint in .*empty.*make train"):
    evaluate_lib.evaluate(smoke_config(), str(tmp_path / "empty"))


def _write_klines(folder, seed):
  """Two synthetic assets under new names, as Binance kline CSV files."""
  frames = synthetic_market("crypto", 2, 900, seed=seed, interval="1h", start="2023-03-01")
  for name, frame in zip(("AAAUSDT", "BBBUSDT"), frames.values()):
    pl.DataFrame(
      {
        "open_time": frame["time"],
        "open": frame["open"],
        "high": frame["high"],
        "low": frame["low"],
        "close": frame["close"],
        "volume": frame["volume"],
        "close_time": frame["time"] + 3_599_999,
        "quote_volume": frame["notional"],
        "count": pl.Series([10] * frame.height),
        "taker_buy_volume": frame["volume"] / 2,
        "taker_buy_quote_volume": frame["notional"] / 2,
      }
    ).write_csv(os.path.join(folder, f"{name}_1h.csv"))


def test_trained_model_evaluates_on_unseen_assets_from_files(workdir, tmp_path):
  data = tmp_path / "other_market"
  data.mkdir()
  _write_klines(str(data), seed=7)
  run = str(tmp_path / "run")
  shutil.copytree(workdir, run)
  run_main(
    "--mode=eval",
    "--config=experiments/crypto_intraday.py:smoke",
    f"--workdir={run}",
    f"--config.data.path={data}",
    "--config.data.source=files",
    "--config.data.train_start=2023-03-01",
    "--config.data.train_end=2023-03-24",
    "--config.data.val_start=2023-03-25",
    "--config.data.val_end=2023-03-26",
    "--config.data.test_start=2023-03-27",
    "--config.data.test_end=",
    "--config.eval.bootstrap=100",
  )
  out = os.path.join(run, "eval_other_market")
  with open(os.path.join(out, "report.md")) as f:
    first = f.readline()
  assert (
    first.startswith("Data source: ") and "AAAUSDT_1h.csv" in first and "SYNTHETIC" not in first
  )
  assets = set(pl.read_csv(os.path.join(out, "per_asset.csv"))["asset"])
  assert assets == {"AAAUSDT", "BBBUSDT"}
  # The run's own report was left alone.
  with open(os.path.join(run, "report.md")) as f:
    assert f.readline().startswith("Data source: SYNTHETIC")


def test_evaluation_uses_the_model_config_the_run_was_trained_with(workdir):
  trained = workdir_lib.trained_model_config(workdir, None)
  other = dataclasses.replace(
    trained, allocator=dataclasses.replace(trained.allocator, width=trained.allocator.width + 3)
  )
  assert workdir_lib.trained_model_config(workdir, other) == trained
  assert trained.allocator.width == smoke_config().model.allocator.width


def test_checkpoint_of_another_model_raises_a_clear_error(workdir):
  trained = workdir_lib.trained_model_config(workdir, None)
  variant = "per_step" if trained.allocator.variant == "shared" else "shared"
  other = dataclasses.replace(
    trained, allocator=dataclasses.replace(trained.allocator, variant=variant)
  )
  with pytest.raises(ValueError, match="does not fit the model"):
    workdir_lib.restore_params(workdir, other)


def _two_members(workdir):
  """The trained run's config and parameters, a perturbed copy of them, and 9 test orders."""
  config = workdir_lib.trained_model_config(workdir, None)
  params, _ = workdir_lib.restore_params(workdir, config)
  other = jax.tree.map(lambda x: x * 1.05, params)
  _, _, test_ds, _, _ = experiment_lib.load_data(smoke_config())
  batch = evaluate_lib.gather(test_ds, np.arange(min(9, test_ds.num_windows)))
  return config, params, other, batch


def test_ensemble_averages_the_members_allocations(workdir):
  """lem_allocations over a list of parameter trees is the mean of each tree's allocations."""
  config, params, other, batch = _two_members(workdir)
  one = evaluate_lib.lem_allocations(params, config, batch, 0.0, 1.0, 4)
  two = evaluate_lib.lem_allocations(other, config, batch, 0.0, 1.0, 4)
  both = evaluate_lib.lem_allocations([params, other], config, batch, 0.0, 1.0, 4)
  assert np.abs(one - two).max() > 1e-4  # the members differ, so the test can see a wrong mean
  np.testing.assert_allclose(both, (one + two) / 2, atol=1e-6)
  np.testing.assert_allclose(both.sum(axis=1), 1.0, atol=1e-5)  # still complete every order


def test_ensemble_rules_combine_inside_the_scan(workdir):
  """rule="median_proposal"/"mean_proposal" steers one execution; identical members are the run."""
  config, params, other, batch = _two_members(workdir)
  one = evaluate_lib.lem_allocations(params, config, batch, 0.0, 1.0, 4)
  same = evaluate_lib.lem_allocations(
    [params, params], config, batch, 0.0, 1.0, 4, None, "median_proposal"
  )
  np.testing.assert_allclose(same, one, atol=1e-5)
  averaged = evaluate_lib.lem_allocations([params, other], config, batch, 0.0, 1.0, 4)
  steered = evaluate_lib.lem_allocations(
    [params, other], config, batch, 0.0, 1.0, 4, None, "mean_proposal"
  )
  assert np.abs(steered - averaged).max() > 1e-5  # not the average of finished allocations
  np.testing.assert_allclose(steered.sum(axis=1), 1.0, atol=1e-5)
  with pytest.raises(ValueError, match="ensemble rule 'vote'"):
    evaluate_lib.lem_allocations([params, other], config, batch, 0.0, 1.0, 4, None, "vote")
  assert evaluate_lib.ensemble_dir("allocations") == evaluate_lib.ENSEMBLE_DIR
  assert evaluate_lib.ensemble_dir("median_proposal") == "ensemble_median_proposal"


def test_ensemble_report_goes_to_its_own_folder(workdir, tmp_path):
  twin = str(tmp_path / "twin")
  shutil.copytree(workdir, twin)
  before = pathlib.Path(workdir, "report.md").read_text()
  run_main(
    "--mode=eval",
    "--config=experiments/crypto_intraday.py:smoke",
    f"--workdir={workdir}",
    "--config.eval.bootstrap=100",
    f"--config.eval.ensemble={twin}",
  )
  out = os.path.join(workdir, evaluate_lib.ENSEMBLE_DIR)
  assert "SEED ENSEMBLE" in pathlib.Path(out, "report.md").read_text()
  assert pathlib.Path(workdir, "report.md").read_text() == before
  # Two identical members: the ensemble's LEM is the run's own LEM, order by order.
  mine = pl.read_parquet(os.path.join(workdir, "orders.parquet")).filter(
    pl.col("strategy") == "LEM"
  )
  ens = pl.read_parquet(os.path.join(out, "orders.parquet")).filter(pl.col("strategy") == "LEM")
  np.testing.assert_allclose(
    ens["improvement_bps"].to_numpy(), mine["improvement_bps"].to_numpy(), atol=1e-4
  )
  with pytest.raises(ValueError, match="twice"):
    evaluate_lib.ensemble_members(workdir, f"{twin},{twin}")
  with open(os.path.join(twin, workdir_lib.CONFIG_FILE)) as f:
    saved = json.load(f)
  saved["resolved"]["model"]["allocator"]["width"] += 1
  with open(os.path.join(twin, workdir_lib.CONFIG_FILE), "w") as f:
    json.dump(saved, f)
  ecfg = dataclasses.replace(config_lib.EvalConfig(), ensemble=twin)
  with pytest.raises(ValueError, match="another model config"):
    evaluate_lib.ensemble_params(workdir, ecfg, workdir_lib.trained_model_config(workdir, None))
