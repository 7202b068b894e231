"""Seeding and thread control: runs are reproducible from the config's seed."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party code still draws from the legacy global state
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)


def set_threads(num_threads: int) -> None:
    """torch's default thread count stalls on 2 busy cores; the config sets it explicitly."""
    import torch

    if num_threads > 0:
        torch.set_num_threads(num_threads)
        os.environ["OMP_NUM_THREADS"] = str(num_threads)
