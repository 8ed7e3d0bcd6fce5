"""Frozen, typed configuration dataclasses; ConfigDicts are converted, strictly, at the module boundary."""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import os
from collections.abc import Iterable
from typing import Any


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Market-context encoder sizes (SPEC section 3)."""

  n_features: int = 8  # F, scalar input features per bar
  embed_dim: int = 20  # E, width of each feature's embedding
  hidden: int = 200  # H, width of the context
  n_tkan_layers: int = 2  # stacked TKAN layers
  n_kan_sublayers: int = 1  # KAN sub-layers feeding each TKAN output gate
  kan_grid: int = 3  # G, uniform grid intervals of the B-spline basis
  kan_order: int = 3  # k, B-spline order
  kan_range: tuple[float, float] = (-1.0, 1.0)
  kan_activation: str = "silu"  # base-branch activation of KANLinear
  n_attention_heads: int = 8
  dropout: float = 0.0
  # Matmul policy of every encoder layer (lemjax/precision.py): "highest" (float32), "default"
  # (TF32 on recent NVIDIA GPUs) or "bf16" (bfloat16 operands, float32 sums). The allocator, its
  # price accounting and the loss stay float32 at full precision under every policy.
  matmul_precision: str = "highest"


@dataclasses.dataclass(frozen=True)
class AllocatorConfig:
  """Allocation network sizes (SPEC section 3, item 5)."""

  n_ahead: int = 12  # N, execution bars
  width: int = 200  # hidden width of each head/scenario MLP
  variant: str = "per_step"  # "per_step": separate MLP per step; "shared": one MLP per head/scenario + step embedding
  # The MLP's factor on the base schedule lies in (0, max_scale); >= N lets a head finish anywhere.
  max_scale: float = 12.0
  # Each order's size (relative to expected volume) is a model input; set from `costs.enabled`.
  size_input: bool = False
  # The K heads of a scenario share their MLP's weights; each keeps its own biases and schedule.
  tie_heads: bool = False
  # With tie_heads, which weights are shared: "all", or "trunk" (context and hidden layers).
  tie_scope: str = "all"
  # "independent": every head's MLP drawn on its own; "copies": a scenario's heads start equal.
  head_init: str = "independent"


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """Training objective (SPEC section 4); see lemjax/objectives.py."""

  flexible_weight: float = 1.0  # weight of the flexible heads' terms (k < N)
  fixed_weight: float = 1.0  # weight of the fixed-duration head's tracking terms (k = N)
  vwap_weight: float = 1.0  # weight of the terms judged against VWAP
  twap_weight: float = 1.0  # weight of the terms judged against TWAP
  per_side: bool = (
    False  # flexible heads: softplus(-imp) per side instead of the buy-minus-sell spread
  )
  softplus_scale_bps: float = (
    100.0  # slippage (bps) is divided by this inside softplus; 100 = percent, as in the paper
  )
  mask_temperature: float = (
    2e-3  # soft window: a bar with remaining fraction r weighs 1 - exp(-r / temperature)
  )
  mask_temperature_start: float = 0.05  # training starts at this temperature (0: no annealing) ...
  mask_anneal_steps: int = (
    500  # ... and reaches `mask_temperature` geometrically after this many steps
  )
  mask_rewarm_every: int = (
    0  # > 0: the anneal restarts every this many steps (a head stuck at the sharp window gets
    # the warm window's gradient again); 0: one anneal
  )
  mask_rewarm_collapsed: bool = (
    True  # restart the anneal of each cell the training warning names as collapsed (see train.py)
  )
  reference_compat: bool = (
    False  # reproduce the `lems` loss exactly (percent, its masks, 0.5-weight soft mask)
  )
  reference_alpha: float = (
    50.0  # sharpness of the `lems` sigmoid window mask (reference_compat only)
  )


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The LEM's sizes: encoder, allocator and the window (lookback, n_ahead, shared with DataConfig)."""

  lookback: int = 120  # L, history bars before t0
  n_ahead: int = 12  # N
  encoder: EncoderConfig = EncoderConfig()
  allocator: AllocatorConfig = AllocatorConfig()
  reference_compat: bool = False  # reproduce the `lems` package's conventions (SPEC section 8)
  # Decision s reads the encoder output at bar s - decision_lag: 1 is causal (SPEC section 2); 0 is
  # the `lems` package's one-bar look-ahead, for measuring it only (lemjax/lookahead.py).
  decision_lag: int = 1

  def __post_init__(self):
    lag = self.decision_lag
    if isinstance(lag, bool) or not isinstance(lag, int) or lag not in (0, 1):
      raise ValueError(
        f"model.decision_lag={self.decision_lag!r} must be 1 (causal) or 0 (one-bar "
        "look-ahead, research only)"
      )

  @property
  def seq_len(self) -> int:
    """T = L + N - 1: bars t0-L .. t0+N-2 feed the encoder."""
    return self.lookback + self.n_ahead - 1


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Market data, windows and splits (SPEC section 6); lookback/n_ahead must match ModelConfig."""

  source: str = "auto"  # "auto": files under `path` if any, else synthetic; "files"; "synthetic"
  path: str = "data/binance"  # folder searched (recursively) for kline / daily-bar files
  kind: str = "auto"  # "auto" (detected from the files), "binance" klines or "daily" equity bars
  interval: str = "1h"  # bar length of the files, e.g. "15m", "1h", "1d"
  resample_to: str = ""  # coarser bar length to aggregate to ("" keeps `interval`), e.g. "4h"
  symbols: tuple[str, ...] = ()  # assets to keep; empty keeps every asset found
  lookback: int = 120  # L, history bars before t0
  n_ahead: int = 12  # N, execution bars
  stride: int = 1  # bars between consecutive window origins
  volume_window: str = "7d"  # time span of the trailing mean in the log-volume feature
  # Split date ranges (ISO dates, both ends inclusive, UTC); "" means the data's first / last bar.
  # A window belongs to the split that holds all its bars, so splits are L + N bars apart.
  train_start: str = "2022-01-01"
  train_end: str = "2024-12-31"
  val_start: str = "2025-01-01"
  val_end: str = "2025-06-30"
  test_start: str = "2025-07-01"
  test_end: str = ""
  # Embedded synthetic market (used when no files are found, or with source="synthetic").
  synthetic_regime: str = (
    "crypto"  # "crypto": 24/7 bars; "equity": weekday sessions (or daily bars)
  )
  synthetic_assets: int = 4  # number of synthetic assets
  synthetic_bars: int = 8760  # bars per synthetic asset
  synthetic_seed: int = 0  # seed of the synthetic market (deterministic)
  synthetic_start: str = "2022-01-03"  # first synthetic bar (ISO date, UTC)
  synthetic_split: tuple[float, float, float] = (
    0.7,
    0.15,
    0.15,
  )  # train/val/test fractions of its time range
  martingale: bool = False  # synthetic prices a pure martingale (null test, SPEC section 7)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """AdamW, its learning-rate schedule and clipping: every field `train.make_optimizer` reads."""

  learning_rate: float = 1e-3  # peak learning rate
  schedule: str = "cosine"  # "cosine" (warm-up then cosine decay) or "constant" (warm-up then flat)
  warmup_steps: int = 100  # linear warm-up from 0 to the peak
  final_lr_fraction: float = 0.1  # cosine: final learning rate as a fraction of the peak
  weight_decay: float = 1e-4  # AdamW decoupled weight decay
  clip_norm: float = 1.0  # global-norm gradient clipping (0 disables)
  steps: int = 3000  # optimiser steps (the cosine decays over all of them)


@dataclasses.dataclass(frozen=True)
class TrainConfig(OptimizerConfig):
  """Optimisation, order-term sampling, validation and checkpoint cadence (lemjax/train.py).

  The optimiser fields are inherited from OptimizerConfig, so the `train` section stays flat
  (as in experiments/base.py and every saved config.json).
  """

  batch_size: int = 64  # B, parent orders per step
  # Per-step rate bounds (fractions of the parent order) drawn uniformly per sample, then made
  # feasible: r_min <= 1/N <= r_max, so one model serves many contracts.
  r_min_range: tuple[float, float] = (0.0, 0.05)
  r_max_range: tuple[float, float] = (0.25, 1.0)
  ema_decay: float = 0.0  # > 0: validate, checkpoint and serve an average of the parameters
  log_every: int = 50  # steps between metric fetches (the only host syncs)
  eval_every: int = 250  # steps between validations and checkpoints
  val_orders: int = 1024  # fixed validation orders (evenly spaced over the split)
  val_batch_size: int = 256  # orders per validation batch
  patience: int = 6  # validations without improvement before stopping (0: never)
  max_checkpoints: int = 2  # rolling checkpoints kept for resuming
  stop_after: int = 0  # leave the loop after this step without saving (tests a kill); 0: off
  progress: bool = True  # tqdm progress bar


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """Test-split evaluation and report (lemjax/evaluate.py)."""

  checkpoint: str = "best"  # "best" (lowest validation loss) or "latest"
  batch_size: int = 256  # orders per forward pass
  r_min: float = 0.0  # per-step lower rate bound of every test order (fraction)
  r_max: float = 1.0  # per-step upper rate bound of every test order (fraction)
  order_stride: int = 0  # bars between consecutive test orders of one asset (0: N, no overlap)
  max_orders: int = 0  # cap on test orders, evenly spaced (0: all)
  min_period: int = 6  # min period (bars) of the per-strategy table
  benchmark: str = "vwap"  # scenario shown in report.md tables; CSVs hold all of them
  target: str = "quantity"
  nested_heads: bool = True  # serve min period k with a validated head of minimum >= k
  # How that head is chosen (lemjax/heads.py): "chain" (own head only where it beats the head
  # serving k + 1 by more than one clustered standard error) or "best" (best mean of minimum >= k).
  head_rule: str = "best"
  split: str = "test"  # orders scored: "test", or "val" (study mode; choices on training orders)
  # Comma-separated work directories of runs of the same model (e.g. other seeds): the LEM's
  # allocations are the average of this run's and theirs (a seed ensemble; averages of feasible
  # allocations are feasible). The report goes to <workdir>/ensemble/, never over this run's.
  ensemble: str = ""
  # How the ensemble combines its members: "allocations" (average their finished allocations),
  # "mean_proposal" or "median_proposal" (combine their proposed trades at every decision inside
  # one execution, then project; reports go to <workdir>/ensemble_<rule>/).
  ensemble_rule: str = "allocations"
  theta_grid_bps: tuple[float, ...] = (
    0.0,
    2.0,
    5.0,
    10.0,
    20.0,
    35.0,
    50.0,
    75.0,
    100.0,
    150.0,
    250.0,
    400.0,
    float("inf"),
  )  # optional-stopping thresholds
  vol_theta_grid: tuple[float, ...] = (
    0.0,
    0.05,
    0.1,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    float("inf"),
  )  # vol-scaled thresholds (x vol x sqrt(bars left))
  lsm_ridge: float = 1e-3  # ridge penalty of the least-squares stopping fit (standardised features)
  tune_orders: int = 2048  # training orders used to tune theta and the volume profile
  val_orders: int = 2048  # validation orders on which the best causal baseline is chosen
  bootstrap: int = 2000  # bootstrap resamples for the 95% intervals
  block_length: int = 5  # start times per bootstrap block (lemjax/stats.py)
  plot_orders: int = 3  # orders drawn in the allocation-curve plot
  paper_tables: str = "../shared/paper_tables"  # the paper's published CSV tables (--mode=compare)
  seed: int = 0  # bootstrap and order-selection seed


SPREADS = ("config", "high_low")  # CostConfig.spread: where each order's half-spread comes from


@dataclasses.dataclass(frozen=True)
class CostConfig:
  """Execution costs (SPEC section 6, lemjax/costs.py); disabled reproduces cost-free fills exactly.

  An order's size is its parent quantity as a fraction of the expected market volume over its N
  bars (N times the lookback's mean bar volume, known at arrival). A child order in a bar pays, in
  bps of the bar's price: fee + half-spread + eta * sigma * sqrt(child shares / bar volume), sigma
  the lookback volatility in bps per bar (the square-root law of temporary impact). The half-spread
  is `half_spread_bps` for every order (spread="config"), or each order's own estimate from the
  high, low and close of its L lookback bars (spread="high_low": the Abdi & Ranaldo (2017)
  close-high-low estimator, floored at 0; only bars before the order's first execution bar enter).
  """

  enabled: bool = False  # charge costs in training, evaluation, baselines and the online API
  fee_bps: float = 1.0  # fee per child order, bps of its notional
  half_spread_bps: float = 1.0  # half the quoted spread, bps (paid on every child; spread="config")
  spread: str = "config"  # half-spread source: "config" (half_spread_bps) or "high_low" (per order)
  impact_eta: float = 1.0  # coefficient of the square-root impact (dimensionless)
  participation_cap: float = 0.25  # rho: a child <= rho x its bar's expected volume
  size_range: tuple[float, float] = (1e-3, 0.2)  # training sizes, log-uniform (fraction of volume)
  eval_size: float = 0.01  # size of the test orders in the main report tables
  size_buckets: tuple[float, ...] = (0.001, 0.01, 0.05, 0.2)  # sizes of the size-bucket table
  volume_floor: float = 0.01  # realised bar volume floor (x expected bar volume) inside the sqrt

  def __post_init__(self):
    if self.spread not in SPREADS:
      raise ValueError(f"costs.spread={self.spread!r} must be one of {', '.join(SPREADS)}")


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh of a run (lemjax/sharding.py): batch over a `data` axis, parameters replicated."""

  data: int = 0  # devices on the `data` axis; 0 = every device of every process
  fsdp: bool = False  # also shard large parameters and their optimiser state over `data`
  fsdp_min_size: int = 1 << 18  # parameters with fewer elements stay replicated under fsdp


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
  """Multi-process setup for `jax.distributed.initialize` (lemjax/sharding.py)."""

  enabled: str = "auto"  # "auto": only when the environment names a cluster; "on"; "off"
  coordinator_address: str = ""  # host:port of process 0 ("" = JAX_COORDINATOR_ADDRESS / cluster)
  num_processes: int = 0  # 0 = JAX_NUM_PROCESSES or the cluster's value
  process_id: int = -1  # -1 = JAX_PROCESS_ID or the cluster's value
  # Cross-process collectives of CPU devices: "gloo" (TCP, no extra install) or "mpi"; "" keeps
  # JAX's default. GPUs and TPUs use their own (NCCL, ICI) whatever this says.
  cpu_collectives: str = "gloo"


# --- Builders: a ConfigDict section becomes its dataclass; an unknown key is an error ---------------


def _items(cfg: Any) -> dict:
  if cfg is None:
    return {}
  return dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg)


def check_keys(section: str, keys: Iterable[str], valid: Iterable[str]) -> None:
  """ValueError naming the first of `keys` not in `valid`, and the nearest valid key.

  Args:
    section: dotted path of the keys' section, e.g. "model.encoder" ("" at the top level).
    keys: the keys given.
    valid: the keys the section accepts.
  """
  valid = sorted(valid)
  prefix = f"{section}." if section else ""
  for key in sorted(set(keys) - set(valid)):
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"did you mean {prefix}{close[0]}?" if close else f"valid keys: {', '.join(valid)}"
    raise ValueError(f"unknown config key {prefix}{key}; {hint}")


def _build(cls, cfg: Any, section: str):
  """Dataclass `cls` from a mapping/ConfigDict (lists become tuples); unknown keys raise."""
  if isinstance(cfg, cls):
    return cfg
  items = _items(cfg)
  check_keys(section, items, (f.name for f in dataclasses.fields(cls)))
  return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in items.items()})


def _check_saved_fields(section, cls, name: str, nested: tuple[str, ...] = ()) -> None:
  """ValueError when a saved config section has fields this code does not know, or lacks some."""
  known = {f.name for f in dataclasses.fields(cls)} - set(nested)
  saved = set(section) - set(nested)
  if saved - known:
    raise ValueError(
      f"config field {name}.{sorted(saved - known)[0]} is not known to this version "
      "of lemjax: the checkpoint was written by different code"
    )
  if known - saved:
    raise ValueError(
      f"config field {name}.{sorted(known - saved)[0]} is missing from the saved "
      "config: the checkpoint was written by different code"
    )


def saved_model_config(saved: Any) -> ModelConfig:
  """ModelConfig from a run's saved `resolved.model` section, checking its fields against this code."""
  saved = {"decision_lag": 1, **saved}  # runs saved before the field existed were all causal
  # ... and ran their encoder at full float32 precision.
  saved["encoder"] = {"matmul_precision": "highest", **saved["encoder"]}
  # Runs saved before order sizes or head options existed: no size input, independent heads.
  saved["allocator"] = {
    "size_input": False,
    "tie_heads": False,
    "tie_scope": "all",
    "head_init": "independent",
    **saved["allocator"],
  }
  _check_saved_fields(saved, ModelConfig, "model", ("encoder", "allocator"))
  _check_saved_fields(saved["encoder"], EncoderConfig, "model.encoder")
  _check_saved_fields(saved["allocator"], AllocatorConfig, "model.allocator")
  return model_config(saved)


def model_config(cfg: Any) -> ModelConfig:
  """ModelConfig from a ConfigDict `model` section (sub-sections `encoder`, `allocator`).

  Raises:
    ValueError naming an unknown key, or an `allocator.n_ahead` that is not `n_ahead`.
  """
  items = _items(cfg)
  enc = _build(EncoderConfig, items.pop("encoder", None), "model.encoder")
  n_ahead = items.get("n_ahead", ModelConfig.n_ahead)
  alloc_items = _items(items.pop("allocator", None))
  # The allocator's N is the model's; a saved config.json repeats it.
  if alloc_items.setdefault("n_ahead", n_ahead) != n_ahead:
    raise ValueError(
      f"config model.allocator.n_ahead={alloc_items['n_ahead']} differs from "
      f"model.n_ahead={n_ahead}; set model.n_ahead only"
    )
  alloc = _build(AllocatorConfig, alloc_items, "model.allocator")
  base = _build(ModelConfig, items, "model")
  return dataclasses.replace(base, encoder=enc, allocator=alloc)


def data_config(cfg: Any) -> DataConfig:
  """DataConfig from a ConfigDict `data` section; ValueError on an unknown key."""
  return _build(DataConfig, cfg, "data")


def loss_config(cfg: Any) -> LossConfig:
  """LossConfig from a ConfigDict `loss` section; ValueError on an unknown key."""
  return _build(LossConfig, cfg, "loss")


def train_config(cfg: Any) -> TrainConfig:
  """TrainConfig from a ConfigDict `train` section; ValueError on an unknown key."""
  return _build(TrainConfig, cfg, "train")


def optimizer_config(cfg: OptimizerConfig) -> OptimizerConfig:
  """The optimiser part of `cfg` (a TrainConfig): equal for runs that differ only elsewhere."""
  return OptimizerConfig(
    **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(OptimizerConfig)}
  )


def eval_config(cfg: Any) -> EvalConfig:
  """EvalConfig from a ConfigDict `eval` section; ValueError on an unknown key."""
  return _build(EvalConfig, cfg, "eval")


def costs_config(cfg: Any) -> CostConfig:
  """CostConfig from a ConfigDict `costs` section; ValueError on an unknown key or a bad value."""
  costs = _build(CostConfig, cfg, "costs")
  lo, hi = costs.size_range
  checks = (
    (costs.fee_bps >= 0, "fee_bps", "must be >= 0"),
    (costs.half_spread_bps >= 0, "half_spread_bps", "must be >= 0"),
    (costs.impact_eta >= 0, "impact_eta", "must be >= 0"),
    (0 < costs.participation_cap <= 1, "participation_cap", "must lie in (0, 1]"),
    (0 < lo <= hi <= costs.participation_cap, "size_range", "must satisfy 0 < lo <= hi <= rho"),
    (0 < costs.eval_size <= costs.participation_cap, "eval_size", "must lie in (0, rho]"),
    (
      all(0 < q <= costs.participation_cap for q in costs.size_buckets),
      "size_buckets",
      "must lie in (0, rho]",
    ),
    (costs.volume_floor > 0, "volume_floor", "must be > 0"),
  )
  for ok, name, what in checks:
    if not ok:
      raise ValueError(
        f"costs.{name}={getattr(costs, name)!r} {what} "
        f"(rho = participation_cap = {costs.participation_cap})"
      )
  return costs


def mesh_config(cfg: Any) -> MeshConfig:
  """MeshConfig from a ConfigDict `mesh` section; ValueError on an unknown key."""
  return _build(MeshConfig, cfg, "mesh")


def distributed_config(cfg: Any) -> DistributedConfig:
  """DistributedConfig from a ConfigDict `distributed` section; ValueError on an unknown key."""
  return _build(DistributedConfig, cfg, "distributed")


@dataclasses.dataclass(frozen=True)
class RLConfig:
  """Execution environment and PPO agent of the reinforcement-learning baseline (lemjax/rl/)."""

  obs_bars: int = 4  # W, recent bars whose features the agent observes (bars s-W .. s-1)
  pool_orders: int = 0  # training orders in the environment's pool, evenly spaced (0: all)
  r_min_range: tuple[float, float] = (
    0.0,
    0.05,
  )  # per-episode lower rate bound drawn uniformly, clipped to <= 1/N
  r_max_range: tuple[float, float] = (
    0.25,
    1.0,
  )  # per-episode upper rate bound drawn uniformly, clipped to >= 1/N
  num_envs: int = 1024  # parallel episodes per rollout
  num_steps: int = 16  # environment steps per episode slot per update (episodes last <= N-1)
  updates: int = 250  # PPO updates; env steps = updates * num_envs * num_steps
  epochs: int = 4  # passes over each rollout
  minibatches: int = 8  # minibatches per pass
  learning_rate: float = 3e-4  # Adam step size, annealed linearly to 0
  max_grad_norm: float = 0.5  # global gradient-norm clip
  gamma: float = 1.0  # discount (episodes are short and the reward is terminal)
  gae_lambda: float = 0.95  # GAE lambda
  clip_eps: float = 0.2  # PPO ratio clip
  vf_coef: float = 0.5  # value-loss weight
  ent_coef: float = 1e-2  # entropy bonus weight
  hidden: int = 128  # width of the actor and critic MLPs
  layers: int = 2  # hidden layers of each MLP
  reward_scale_bps: float = 100.0  # reward = improvement in bps / this
  action_stretch: float = (
    0.05  # u = sigmoid(z) maps to the action clip((1 + 2x) u - x, 0, 1): 0 and 1 reachable
  )
  eval_every: int = 50  # updates between validation checks (the best is kept)
  val_orders: int = 512  # validation orders of those checks (evenly spaced)
  seed: int = 0  # agent seed (parameter init, episodes, actions)


def rl_config(cfg: Any) -> RLConfig:
  """RLConfig from a ConfigDict `rl` section; ValueError on an unknown key."""
  return _build(RLConfig, cfg, "rl")


# Each section of an experiment ConfigDict and its builder; `name` and `seed` are plain values.
SECTIONS = {
  "data": data_config,
  "model": model_config,
  "loss": loss_config,
  "train": train_config,
  "eval": eval_config,
  "costs": costs_config,
  "mesh": mesh_config,
  "distributed": distributed_config,
  "rl": rl_config,
}
TOP_LEVEL_KEYS = ("name", "seed")


def check_config(config: Any) -> None:
  """ValueError naming the first unknown section or key of a whole experiment ConfigDict."""
  items = _items(config)
  check_keys("", items, (*TOP_LEVEL_KEYS, *SECTIONS))
  for section, build in SECTIONS.items():
    build(items.get(section))


def load_experiment(spec: str) -> Any:
  """The ConfigDict of an experiment file, `path.py` or `path.py:variant` as `--config` takes it.

  Raises:
    FileNotFoundError when the file does not exist.
  """
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("experiment_config", path)
  if module_spec is None or not os.path.isfile(path):
    raise FileNotFoundError(f"experiment file {path} not found")
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()
