"""Losses that compare the stocks of one date, for date-batched training (`datamodule.batching=date`).

A batch holds whole cross-sections; `t` (the date row of each sample) says which rows share a date. Each loss
works on the padded `[D, N_max]` view of the batch (`dense_by_date`) and averages over dates, so a date's
market move, common to all its stocks, carries no weight: only the order of the stocks within a date does.

- `ic`: minus the per-date Pearson correlation of score and target (Qlib's IC loss).
- `listnet`: cross-entropy between the softmax of the scores and the softmax of the targets over a date's
  stocks (Cao et al., 2007, top-one probability).
- `pairwise`: RankNet's logistic loss over every pair of stocks of a date with different targets, each
  pair weighted equally within its date.
Dates with fewer than MIN_NAMES stocks are skipped (no meaningful cross-section).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from deepq.dataset.targets import MIN_NAMES
from deepq.models.layers import date_slots, scatter_by_date

LOSSES = ("ic", "listnet", "pairwise")


def dense_by_date(values: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of any order -> `[D, N_max, ...]` grouped by date (dates ascending, rows in their order within a
    date, zero padding) and the `[D, N_max]` mask of real rows. Gradients flow through to `values`."""
    return scatter_by_date(values, date_slots(t))


def _masked_softmax_log(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x.masked_fill(~mask, float("-inf")), dim=1)


def ranking_loss(name: str, score: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The named per-date loss of scores [M] against targets [M] for samples on date rows t [M]."""
    if name not in LOSSES:
        raise ValueError(f"ranking loss must be one of {LOSSES}, got {name!r}")
    ok = torch.isfinite(y)
    s, m = dense_by_date(score[ok], t[ok])
    target, _ = dense_by_date(y[ok], t[ok])
    keep = m.sum(1) >= MIN_NAMES
    if not bool(keep.any()):
        return score.sum() * 0.0  # no usable cross-section: no gradient, but a graph for Lightning
    s, target, m = s[keep], target[keep], m[keep]
    n = m.sum(1).to(s.dtype)
    if name == "ic":
        sc = (s - (s * m).sum(1, keepdim=True) / n[:, None]) * m
        tc = (target - (target * m).sum(1, keepdim=True) / n[:, None]) * m
        cov = (sc * tc).sum(1)
        # eps inside the root: a zero-initialised network scores every stock alike, where sqrt's gradient
        # would be infinite
        corr = cov / ((sc.pow(2).sum(1) + 1e-6) * (tc.pow(2).sum(1) + 1e-6)).sqrt()
        return -corr.mean()
    if name == "listnet":
        # targets scaled to unit std per date, so the target distribution's sharpness does not depend on
        # the label's units (raw returns ~1e-2, Gaussian ranks ~1)
        tc = target - (target * m).sum(1, keepdim=True) / n[:, None]
        std = ((tc * m).pow(2).sum(1) / n).sqrt().clamp_min(1e-8)
        p_true = torch.softmax((tc / std[:, None]).masked_fill(~m, float("-inf")), dim=1)
        return -(p_true * _masked_softmax_log(s, m).masked_fill(~m, 0.0)).sum(1).mean()
    # pairwise (RankNet): log(1 + exp(-(s_i - s_j))) for every pair with target_i > target_j
    diff = s[:, :, None] - s[:, None, :]
    better = (target[:, :, None] > target[:, None, :]) & m[:, :, None] & m[:, None, :]
    per_pair = F.softplus(-diff) * better
    n_pairs = better.sum((1, 2)).clamp_min(1)
    return (per_pair.sum((1, 2)) / n_pairs).mean()
