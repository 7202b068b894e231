"""Mean-CVaR portfolio as a linear programme (Rockafellar & Uryasev 2000), solved with scipy's HiGHS.

    minimise  -mu'w + lambda * (alpha + 1 / ((1 - beta) S) * sum_s u_s)
    s.t.      u_s >= -r_s'w - alpha,  u_s >= 0               (u_s: loss beyond VaR level alpha in scenario s)
              sum w = 1,  0 <= w_i <= max_weight              (long-only, fully invested)
              |w_i - w_prev_i| <= t_i,  sum t_i <= max_turnover   (optional turnover limit)

At the optimum alpha is the beta-VaR and alpha + mean(u)/(1 - beta) the beta-CVaR of the scenario losses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.sparse import csr_matrix, hstack, identity, vstack


@dataclass(frozen=True)
class CvarSolution:
    weights: np.ndarray
    var: float  # beta-VaR of the scenario loss at the optimum
    cvar: float  # beta-CVaR of the scenario loss at the optimum (the LP's estimate)
    status: str


def empirical_cvar(losses: np.ndarray, beta: float) -> float:
    """CVaR of a discrete, equally likely loss sample: min over a of a + E[(L - a)+] / (1 - beta)."""
    losses = np.sort(np.asarray(losses, dtype=np.float64))
    # the minimiser is the beta-quantile; check every sample point near it for exactness on ties
    candidates = losses
    vals = candidates[:, None] + np.maximum(losses[None, :] - candidates[:, None], 0).mean(axis=1)[
        :, None
    ] / (1 - beta)
    return float(vals.min())


def mean_cvar_weights(
    scenarios: np.ndarray,
    mu: np.ndarray,
    beta: float = 0.95,
    risk_aversion: float = 1.0,
    max_weight: float = 0.1,
    w_prev: np.ndarray | None = None,
    max_turnover: float | None = None,
) -> CvarSolution:
    """Weights over n assets from [S, n] return scenarios and [n] expected returns (see module docstring)."""
    R = np.nan_to_num(np.asarray(scenarios, dtype=np.float64))
    S, n = R.shape
    mu = np.nan_to_num(np.asarray(mu, dtype=np.float64))
    if n * max_weight < 1 - 1e-12:
        raise ValueError(
            f"cvar: max_weight={max_weight} x {n} assets cannot reach a fully invested portfolio"
        )
    use_turnover = max_turnover is not None and w_prev is not None
    k = n + 1 + S + (n if use_turnover else 0)
    c = np.zeros(k)
    c[:n] = -mu
    c[n] = risk_aversion
    c[n + 1 : n + 1 + S] = risk_aversion / ((1 - beta) * S)
    # -R w - alpha - u <= 0
    blocks = [csr_matrix(-R), csr_matrix(-np.ones((S, 1))), -identity(S, format="csr")]
    if use_turnover:
        blocks.append(csr_matrix((S, n)))
    A = [hstack(blocks)]
    b = [np.zeros(S)]
    if use_turnover:
        assert w_prev is not None and max_turnover is not None
        I_n = identity(n, format="csr")
        zeros_a, zeros_u = csr_matrix((n, 1)), csr_matrix((n, S))
        A.append(hstack([I_n, zeros_a, zeros_u, -I_n]))  # w - t <= w_prev
        A.append(hstack([-I_n, zeros_a, zeros_u, -I_n]))  # -w - t <= -w_prev
        A.append(hstack([csr_matrix((1, n + 1 + S)), csr_matrix(np.ones((1, n)))]))
        b += [w_prev, -w_prev, np.array([max_turnover])]
    A_eq = csr_matrix(np.concatenate([np.ones(n), np.zeros(k - n)])[None, :])
    bounds = [(0.0, max_weight)] * n + [(None, None)] + [(0.0, None)] * S + [(0.0, None)] * (k - n - 1 - S)
    res = linprog(
        c, A_ub=vstack(A), b_ub=np.concatenate(b), A_eq=A_eq, b_eq=[1.0], bounds=bounds, method="highs"
    )
    if res.status != 0 and use_turnover:
        # the turnover budget cannot reach a fully invested portfolio (e.g. the first rebalance): lift it once
        return mean_cvar_weights(R, mu, beta, risk_aversion, max_weight)
    if res.status != 0:
        raise ValueError(f"cvar: linprog failed with status {res.status}: {res.message}")
    x = res.x
    w = np.clip(x[:n], 0.0, None)
    alpha = float(x[n])
    cvar = alpha + float(x[n + 1 : n + 1 + S].sum()) / ((1 - beta) * S)
    return CvarSolution(w / w.sum(), alpha, cvar, str(res.message))
