"""Every configuration field of a lemjax run, with its meaning and units; experiments override a few.

Sections map one-to-one onto the frozen dataclasses of lemjax/config.py (`data` -> DataConfig,
`model` -> ModelConfig, `loss` -> LossConfig, `train` -> TrainConfig, `eval` -> EvalConfig,
`costs` -> CostConfig, `mesh` -> MeshConfig, `distributed` -> DistributedConfig, `rl` -> RLConfig);
a key that its dataclass lacks is an error naming it (tests/test_config.py checks that this file sets every field).
`lookback` and `n_ahead` are shared references: overriding `--config.model.lookback=16` also
moves `data.lookback`; likewise `costs.enabled` moves `model.allocator.size_input`.
"""

import os

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The base configuration: the crypto-intraday defaults at a CPU-friendly size."""
  config = ml_collections.ConfigDict()
  config.name = "base"  # experiment name; the default work directory is runs/<name>[_SYNTHETIC]
  config.seed = 0  # master seed: parameter init, order terms, sampler, dropout

  lookback = ml_collections.FieldReference(120)  # L, history bars before t0
  n_ahead = ml_collections.FieldReference(12)  # N, execution bars (maximum duration)
  costs_on = ml_collections.FieldReference(False)  # execution costs (the `costs` variant)

  # --- data: where the bars come from, windows and date splits -------------------------------
  data = config.data = ml_collections.ConfigDict()
  data.source = "auto"  # "auto": files under `path` if any, else synthetic; "files"; "synthetic"
  data.path = "../shared/data/crypto/1h"  # folder searched recursively for kline / daily-bar files
  data.kind = "auto"  # "auto" (detected), "binance" klines or "daily" equity bars
  data.interval = "1h"  # bar length of the files, e.g. "15m", "1h", "1d"
  data.resample_to = ""  # coarser bar length to aggregate to ("" keeps `interval`)
  data.symbols = ()  # assets to keep (e.g. ("BTCUSDT",)); empty keeps every asset found
  data.lookback = lookback
  data.n_ahead = n_ahead
  data.stride = 1  # bars between consecutive training window origins
  data.volume_window = "7d"  # time span of the trailing mean in the log-volume feature
  data.train_start = "2022-01-01"  # split ranges: ISO dates, inclusive, UTC; "" = first/last bar
  data.train_end = "2024-12-31"
  data.val_start = "2025-01-01"
  data.val_end = "2025-06-30"
  data.test_start = "2025-07-01"
  data.test_end = ""
  data.synthetic_regime = (
    "crypto"  # fallback market: "crypto" (24/7) or "equity" (sessions / daily)
  )
  data.synthetic_assets = 4  # synthetic assets
  data.synthetic_bars = 8760  # bars per synthetic asset (8760 = one year of hours)
  data.synthetic_seed = 0  # seed of the synthetic market
  data.synthetic_start = "2022-01-03"  # first synthetic bar (ISO date, UTC)
  data.synthetic_split = (0.7, 0.15, 0.15)  # train/val/test fractions of the synthetic time range
  data.martingale = False  # synthetic prices a pure martingale (null test, SPEC section 7)

  # --- model: encoder and allocator sizes ------------------------------------------------------
  model = config.model = ml_collections.ConfigDict()
  model.lookback = lookback
  model.n_ahead = n_ahead
  model.reference_compat = False  # reproduce the `lems` package's conventions (SPEC section 8)
  # 1: decision s reads the encoder output at bar s-1 (causal, SPEC section 2). 0: at bar s, the
  # bar it trades (the `lems` package's one-bar look-ahead): research only, the `leaky` variant.
  model.decision_lag = 1
  enc = model.encoder = ml_collections.ConfigDict()
  enc.n_features = 0  # F; 0 = taken from the data at run time
  enc.embed_dim = 8  # E, width of each feature's embedding
  enc.hidden = 32  # H, width of the market context
  enc.n_tkan_layers = 2  # stacked TKAN layers
  enc.n_kan_sublayers = 1  # KAN sub-layers feeding each TKAN output gate
  enc.kan_grid = 3  # uniform grid intervals of the B-spline basis
  enc.kan_order = 3  # B-spline order
  enc.kan_range = (-1.0, 1.0)  # grid range of the B-spline basis (inputs are layer-normalised)
  enc.kan_activation = "silu"  # base-branch activation of the KAN layers
  enc.n_attention_heads = 4  # causal self-attention heads (must divide `hidden`)
  enc.dropout = 0.0  # dropout rate inside the encoder (training only)
  # Encoder matmuls: "highest" (float32), "default" (TF32 on recent NVIDIA GPUs) or "bf16"
  # (bfloat16 operands, float32 sums); the allocator's accounting and the loss stay float32.
  enc.matmul_precision = "highest"
  alloc = model.allocator = ml_collections.ConfigDict()
  alloc.width = 64  # hidden width of each head/scenario MLP
  # "shared": one MLP per head/scenario + a learned step embedding (the default: it matched or beat
  # "per_step" on both experiments with far fewer parameters, see README "Allocator variants");
  # "per_step": a separate MLP per step as in the paper (the `paper` variant).
  alloc.variant = "shared"
  # The MLP's factor on the base schedule lies in (0, max_scale); >= N lets a head finish at any step.
  alloc.max_scale = 12.0
  alloc.size_input = costs_on  # the order's size is a model input exactly when costs are on
  # The heads of a scenario share weights, each with its own biases (docs/study.md): with
  # tie_scope "trunk" the context and hidden layers (each head keeps its own-state input layer and
  # readout; adopted on validation, 3 seeds x both experiments), with "all" every weight.
  # False: every head's MLP is its own (the default before the trunk was measured).
  alloc.tie_heads = True
  alloc.tie_scope = "trunk"
  # "independent": each head's MLP drawn on its own; "copies": a scenario's heads start as copies.
  alloc.head_init = "independent"

  # --- loss: the training objective (SPEC section 4) -------------------------------------------
  loss = config.loss = ml_collections.ConfigDict()
  loss.flexible_weight = 1.0  # weight of the flexible heads' terms (k < N)
  loss.fixed_weight = 1.0  # weight of the fixed-duration head's tracking terms (k = N)
  loss.vwap_weight = 1.0  # weight of the terms judged against VWAP
  loss.twap_weight = 1.0  # weight of the terms judged against TWAP
  loss.per_side = False  # flexible heads: softplus(-imp) per side instead of buy-minus-sell
  loss.softplus_scale_bps = 100.0  # slippage (bps) divided by this inside softplus (100 = percent)
  loss.mask_temperature = (
    2e-3  # soft window: a bar with remaining fraction r weighs 1 - exp(-r/temp)
  )
  # Training starts with a wide window (0: no annealing) that sharpens geometrically to
  # `mask_temperature` over `mask_anneal_steps`: at the sharp temperature alone a head sees no
  # gradient towards ending early until less than ~1% of its order is left, and some never get
  # there (collapsed heads, see lemjax/diagnostics.py). Validation always uses `mask_temperature`.
  loss.mask_temperature_start = 0.05
  loss.mask_anneal_steps = 500
  loss.mask_rewarm_every = 0  # > 0: restart the anneal every this many steps (0: anneal once)
  # At a validation, a head x scenario cell that the training warning names as collapsed (it ends
  # < 5% of orders early beside a min period that ends >= 30%) restarts its own anneal there.
  loss.mask_rewarm_collapsed = True
  loss.reference_compat = False  # the `lems` loss exactly (percent units, its 0.5-weight mask)
  loss.reference_alpha = 50.0  # sharpness of the `lems` sigmoid window mask (reference_compat only)

  # --- train: optimiser, order terms, validation, checkpoints ----------------------------------
  train = config.train = ml_collections.ConfigDict()
  train.batch_size = 64  # B, parent orders per step
  train.steps = 2000  # optimiser steps (~25 min at the default sizes on 2 CPU cores)
  train.learning_rate = 1e-3  # peak learning rate
  train.schedule = "cosine"  # "cosine" (warm-up + cosine decay) or "constant" (warm-up + flat)
  train.warmup_steps = 100  # linear warm-up steps
  train.final_lr_fraction = 0.1  # cosine: final learning rate as a fraction of the peak
  train.weight_decay = 1e-4  # AdamW decoupled weight decay
  train.clip_norm = 1.0  # global gradient-norm clip (0 disables)
  train.r_min_range = (
    0.0,
    0.05,
  )  # per-step lower rate bound drawn per order (fraction), clipped to <= 1/N
  train.r_max_range = (
    0.25,
    1.0,
  )  # per-step upper rate bound drawn per order (fraction), clipped to >= 1/N
  # > 0: validate, checkpoint and serve an exponential moving average of the parameters with
  # this decay per step (0.995: a 200-step horizon); 0: the optimiser's own parameters.
  train.ema_decay = 0.0
  train.log_every = 50  # steps between metric fetches (the only host syncs)
  train.eval_every = 250  # steps between validations and checkpoints
  train.val_orders = 1024  # fixed validation orders, evenly spaced over the validation split
  train.val_batch_size = 256  # orders per validation batch
  train.patience = 6  # validations without improvement before early stopping (0: never)
  train.max_checkpoints = 2  # rolling checkpoints kept for resuming
  train.stop_after = 0  # leave the loop after this step without saving (simulated kill); 0: off
  train.progress = True  # tqdm progress bar

  # --- costs: execution costs and order sizes (SPEC section 6, lemjax/costs.py) ---------------
  # Off reproduces the cost-free numbers exactly. Sizes are fractions of the expected market volume
  # over the order's N bars (N x the lookback's mean bar volume, known at arrival).
  cost = config.costs = ml_collections.ConfigDict()
  cost.enabled = costs_on  # charge costs in training, evaluation, baselines and the online API
  cost.fee_bps = 1.0  # fee per child order, bps of its notional
  cost.half_spread_bps = 1.0  # half the quoted spread, bps, paid on every child order ("config")
  # Half-spread source: "config" (half_spread_bps) or "high_low" (each order's Abdi-Ranaldo
  # estimate from its L lookback bars' high, low and close, bps; lemjax/costs.py).
  cost.spread = "config"
  cost.impact_eta = 1.0  # square-root impact: eta x lookback vol (bps/bar) x sqrt(child / bar vol)
  cost.participation_cap = 0.25  # rho: a child order <= rho x its bar's expected volume
  cost.size_range = (1e-3, 0.2)  # training order sizes, drawn log-uniformly (fraction of volume)
  cost.eval_size = 0.01  # size of every test order in the main report tables
  cost.size_buckets = (0.001, 0.01, 0.05, 0.2)  # sizes of the net-improvement-by-size table
  cost.volume_floor = 0.01  # realised bar volume floor (x expected bar volume) inside the sqrt

  # --- mesh: how a run spreads over devices (lemjax/sharding.py) -------------------------------
  mesh = config.mesh = ml_collections.ConfigDict()
  mesh.data = 0  # devices on the `data` axis (the batch is split over them); 0 = all
  mesh.fsdp = False  # also shard large parameters + optimiser state over `data` (FSDP)
  mesh.fsdp_min_size = 1 << 18  # parameters with fewer elements (count) stay replicated

  # --- distributed: multi-process (multi-host) jobs -----------------------------------------
  dist = config.distributed = ml_collections.ConfigDict()
  dist.enabled = "auto"  # "auto": only inside a multi-process job; "on"; "off"
  dist.coordinator_address = ""  # host:port of process 0; "" = JAX_COORDINATOR_ADDRESS/Slurm/MPI
  dist.num_processes = 0  # 0 = JAX_NUM_PROCESSES or the cluster's value
  dist.process_id = -1  # -1 = JAX_PROCESS_ID or the cluster's value
  dist.cpu_collectives = "gloo"  # CPU devices across processes: "gloo" (TCP), "mpi"; "" = JAX's

  # --- eval: test-split evaluation and report --------------------------------------------------
  ev = config.eval = ml_collections.ConfigDict()
  ev.checkpoint = "best"  # "best" (lowest validation loss) or "latest"
  ev.batch_size = 256  # orders per forward pass
  ev.r_min = 0.0  # per-step lower rate bound of every test order (fraction)
  ev.r_max = 1.0  # per-step upper rate bound of every test order (fraction)
  ev.order_stride = 0  # bars between consecutive test orders of an asset (0: N, no overlap)
  ev.max_orders = 0  # cap on test orders, evenly spaced (0: all)
  ev.min_period = 6  # min period (bars) of the per-strategy table
  ev.benchmark = "vwap"  # scenario of the report.md tables ("vwap"/"twap"); CSVs hold all
  ev.target = "quantity"  # ("quantity"/"notional")
  ev.theta_grid_bps = (
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
  )  # optional-stopping thresholds tried (bps); inf = never stop
  ev.vol_theta_grid = (
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
  )  # vol-scaled thresholds tried (x lookback vol x sqrt(bars left))
  ev.lsm_ridge = 1e-3  # ridge penalty of the least-squares (Longstaff-Schwartz) stopping fit
  ev.tune_orders = 2048  # training orders used to tune theta and build the volume profile
  ev.val_orders = 2048  # validation orders on which the best causal baseline is chosen
  # Serve min period k with the head of minimum >= k that scores best on those validation
  # orders (lemjax/heads.py): a smaller minimum has every option of a larger one. False: own heads.
  ev.nested_heads = True
  # How (lemjax/heads.py): "chain" keeps min period k's own head only where it beats the head
  # serving k + 1 by more than one clustered standard error on those orders, else takes that
  # head (the one-standard-error rule); "best" takes the best mean among minima >= k.
  ev.head_rule = "best"
  # Orders scored: "test" (the report), or "val" for model selection (blind to the test set:
  # the best causal baseline and the head map are then chosen on training orders), written to
  # <workdir>/val_report/.
  ev.split = "test"
  ev.ensemble = (
    ""  # comma-separated runs averaged with this one (seed ensemble; report in ensemble/)
  )
  # How: "allocations" (average finished allocations), or "mean_proposal" / "median_proposal"
  # (combine the members' proposed trades at every decision of one execution; ensemble_<rule>/).
  ev.ensemble_rule = "allocations"
  ev.bootstrap = 2000  # bootstrap resamples of the 95% intervals
  ev.block_length = (
    5  # start times per bootstrap block, ~G^(1/3) of G=596 (crypto) / 31 (DJIA) test starts
  )
  ev.plot_orders = 3  # orders drawn in the allocation-curve plot
  ev.paper_tables = (
    "../shared/paper_tables"  # folder of the paper's published CSVs (--mode=compare)
  )
  ev.seed = 0  # bootstrap and order-selection seed

  # --- rl: the PPO baseline (lemjax/rl/, `--mode=train_rl`, trained into <workdir>/rl/) ---------
  rl = config.rl = ml_collections.ConfigDict()
  rl.obs_bars = 4  # W, recent bars whose features the agent observes (bars s-W .. s-1)
  rl.pool_orders = 0  # training orders in the environment's pool, evenly spaced (0: all)
  rl.r_min_range = (
    0.0,
    0.05,
  )  # per-episode lower rate bound drawn uniformly (fraction), clipped to <= 1/N
  rl.r_max_range = (
    0.25,
    1.0,
  )  # per-episode upper rate bound drawn uniformly (fraction), clipped to >= 1/N
  rl.num_envs = 1024  # parallel episodes per rollout
  rl.num_steps = 16  # environment steps per episode slot per update (an episode is <= N-1 steps)
  rl.updates = (
    250  # PPO updates; env steps = updates * num_envs * num_steps (4.1M, ~6 min on 2 CPU cores)
  )
  rl.epochs = 4  # passes over each rollout
  rl.minibatches = 8  # minibatches per pass
  rl.learning_rate = 3e-4  # Adam step size, annealed linearly to 0
  rl.max_grad_norm = 0.5  # global gradient-norm clip
  rl.gamma = 1.0  # discount (short episodes, terminal reward: the return is the score)
  rl.gae_lambda = 0.95  # GAE lambda
  rl.clip_eps = 0.2  # PPO ratio (and value) clip
  rl.vf_coef = 0.5  # value-loss weight
  rl.ent_coef = 1e-2  # entropy bonus weight (chosen on validation orders: see lemjax/rl/train.py)
  rl.hidden = 128  # width of the actor and critic MLPs
  rl.layers = 2  # hidden layers of each MLP
  rl.reward_scale_bps = 100.0  # reward = improvement in bps / this
  rl.action_stretch = (
    0.05  # u = sigmoid(z) -> action clip((1 + 2x) u - x, 0, 1): pausing and finishing reachable
  )
  rl.eval_every = 50  # updates between validation checks (the best parameters are kept)
  rl.val_orders = 512  # validation orders of those checks, evenly spaced
  rl.seed = 0  # agent seed: parameter init, episodes, actions
  return config


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks `config` in place to the tiny synthetic run used by tests (~1 minute on 2 CPU cores)."""
  config.name = config.name + "_smoke"
  config.data.source = "synthetic"
  config.data.synthetic_assets = 2
  config.data.synthetic_bars = 1200
  config.model.lookback = 16
  config.model.n_ahead = 4
  config.model.encoder.embed_dim = 4
  config.model.encoder.hidden = 8
  config.model.encoder.n_attention_heads = 2
  config.model.allocator.width = 8
  config.train.batch_size = 16
  config.train.steps = 24
  config.train.warmup_steps = 4
  config.loss.mask_anneal_steps = 8
  config.train.log_every = 4
  config.train.eval_every = 8
  config.train.val_orders = 64
  config.train.val_batch_size = 32
  config.eval.batch_size = 64
  config.eval.min_period = 2
  config.eval.tune_orders = 256
  config.eval.bootstrap = 200
  config.eval.plot_orders = 2
  config.rl.num_envs = 64
  config.rl.num_steps = 8
  config.rl.updates = 4
  config.rl.minibatches = 2
  config.rl.hidden = 16
  config.rl.eval_every = 2
  config.rl.val_orders = 32
  return config


def paper(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The paper's sizes (L=120, N=12, H=200, E=20, 8 attention heads) and independent heads: for GPUs."""
  config.name = config.name + "_paper"
  config.model.lookback = 120
  config.model.n_ahead = 12
  config.model.encoder.embed_dim = 20
  config.model.encoder.hidden = 200
  config.model.encoder.n_attention_heads = 8
  config.model.allocator.width = 200
  config.model.allocator.variant = "per_step"
  config.model.allocator.tie_heads = False  # the paper's independent heads
  config.train.batch_size = 64
  config.train.steps = 20000
  config.train.eval_every = 500
  return config


def leaky(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The one-bar look-ahead of the `lems` package (decision_lag=0): measures it, never deploy it.

  The run directory gets a `_LEAKY` suffix and every report says LEAKY (lemjax/lookahead.py).
  """
  config.model.decision_lag = 0
  return config


def costs(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Execution costs on: order size as an input, participation cap, fee, spread and impact.

  The run directory gets a `_costs` suffix; the report adds net improvement by order size.
  """
  config.name = config.name + "_costs"
  config.costs.enabled = True
  return config


def with_variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """Applies the variants named by `arg`, comma-separated (`smoke`, `paper`, `leaky`, `costs`,
  e.g. "smoke,costs"); None or "" keeps the default."""
  variants = {
    "": lambda c: c,
    "default": lambda c: c,
    "smoke": smoke,
    "paper": paper,
    "leaky": leaky,
    "costs": costs,
  }
  names = [name.strip() for name in (arg or "").split(",")]
  for name in names:
    if name not in variants:
      raise ValueError(
        f"unknown config variant {name!r} in {arg!r}; expected one of {sorted(variants)}"
      )
  if "smoke" in names and "paper" in names:
    raise ValueError(f"config variants {arg!r}: `smoke` and `paper` set the sizes both ways")
  for name in names:
    config = variants[name](config)
  return config


def first_existing(*paths: str, contains: str = "") -> str:
  """The first of `paths` that is a folder holding at least one file whose name contains
  `contains` (e.g. "15m": `make data` puts every bar length in one folder), else the last one."""
  for path in paths:
    if os.path.isdir(path) and any(
      contains in name for _, _, files in os.walk(path) for name in files
    ):
      return path
  return paths[-1]
