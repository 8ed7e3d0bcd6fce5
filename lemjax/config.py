"""Frozen, typed configuration dataclasses; ConfigDicts are converted at the module boundary."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
  """Market-context encoder sizes (SPEC section 3)."""
  n_features: int = 8            # F, scalar input features per bar
  embed_dim: int = 20            # E, width of each feature's embedding
  hidden: int = 200              # H, width of the context
  n_tkan_layers: int = 2         # stacked TKAN layers
  n_kan_sublayers: int = 1       # KAN sub-layers feeding each TKAN output gate
  kan_grid: int = 3              # G, uniform grid intervals of the B-spline basis
  kan_order: int = 3             # k, B-spline order
  kan_range: tuple[float, float] = (-1.0, 1.0)
  kan_activation: str = "silu"   # base-branch activation of KANLinear
  n_attention_heads: int = 8
  dropout: float = 0.0


@dataclasses.dataclass(frozen=True)
class AllocatorConfig:
  """Allocation network sizes (SPEC section 3, item 5)."""
  n_ahead: int = 12              # N, execution bars
  width: int = 200               # hidden width of each head/scenario MLP
  variant: str = "per_step"      # "per_step": separate MLP per step; "shared": one MLP per head/scenario + step embedding
  max_scale: float = 4.0         # the MLP's factor on the base schedule lies in (0, max_scale)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  lookback: int = 120            # L, history bars before t0
  n_ahead: int = 12              # N
  encoder: EncoderConfig = EncoderConfig()
  allocator: AllocatorConfig = AllocatorConfig()
  reference_compat: bool = False  # reproduce the `lems` package's conventions (SPEC section 8)

  @property
  def seq_len(self) -> int:
    """T = L + N - 1: bars t0-L .. t0+N-2 feed the encoder."""
    return self.lookback + self.n_ahead - 1


def _build(cls, cfg: Any):
  """Builds dataclass `cls` from a mapping/ConfigDict, ignoring unknown keys."""
  if cfg is None:
    return cls()
  if isinstance(cfg, cls):
    return cfg
  items = dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  kwargs = {}
  for name, value in items.items():
    if name not in fields:
      continue
    if isinstance(value, list):
      value = tuple(value)
    kwargs[name] = value
  return cls(**kwargs)


def model_config(cfg: Any) -> ModelConfig:
  """ModelConfig from a ConfigDict `model` section (sub-sections `encoder`, `allocator`)."""
  items = dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg or {})
  enc = _build(EncoderConfig, items.pop("encoder", None))
  n_ahead = items.get("n_ahead", ModelConfig.n_ahead)
  alloc_items = dict(items.pop("allocator", {}) or {})
  alloc_items["n_ahead"] = n_ahead
  alloc = _build(AllocatorConfig, alloc_items)
  base = _build(ModelConfig, items)
  return dataclasses.replace(base, encoder=enc, allocator=alloc)
