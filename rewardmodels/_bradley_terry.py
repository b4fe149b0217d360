"""Bayesian Bradley-Terry: MAP latent scores with a Gaussian prior, covariates, ties, Laplace SDs.

Model (Davidson 1970 for ties; plain Bradley-Terry when there are none), with d = θ_i - θ_j::

    P(i beats j) = e^{d/2} / Z,   P(tie) = ν / Z,   Z = e^{d/2} + e^{-d/2} + ν
    θ ~ N(m + X β, s²),   β ~ N(0, coef_sd²),   log ν ~ N(0, 2²)

With ν = 0, P(i beats j) = σ(d). The negative log posterior is jointly convex in (θ, β, log ν) (a
log-sum-exp of affine functions plus quadratics), so a damped Newton method with
Jacobi-preconditioned conjugate gradients (matrix-free, Hessian-vector products through the
sparse m x n incidence matrix) finds the unique MAP quickly; items with no comparisons sit at their
prior mean and disconnected comparison graphs are fine.

Posterior SDs come from the Laplace approximation, diag(H⁻¹). For up to `exact_sd_limit`
parameters H is inverted densely (exact). Above that, the θ-block is written H = D - O (D its
diagonal, O ≥ 0 the comparison weights between items) and diag(H⁻¹) is the Neumann series
D⁻¹ + D⁻¹ O D⁻¹ O D⁻¹ + ... truncated after the second term:
``var_i ≈ 1/D_i + Σ_j O_ij² / (D_i² D_j)``. Every dropped term is non-negative, so this is a
lower bound that is tight when the prior or few comparisons per item dominate, and it ignores
the uncertainty in β and ν.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, cg

_LOG_NU_SD = 2.0  # prior SD of log ν (keeps ν finite when every comparison is a tie)


@dataclass(frozen=True)
class Scores:
    """Posterior of the latent scores: means and Laplace SDs, shape (n,) each."""

    mean: np.ndarray  # (n,) MAP latent score per item
    sd: np.ndarray  # (n,) Laplace posterior SD per item
    coef: np.ndarray  # (p,) fitted covariate coefficients (empty without covariates)
    tie: float = 0.0  # Davidson tie parameter ν (0: no ties were observed)
    n_iter: int = 0  # Newton iterations used
    converged: bool = True  # gradient norm fell below the tolerance

    def __len__(self) -> int:
        return len(self.mean)


def win_probability(theta_a, theta_b, tie: float = 0.0):
    """P(a beats b) under the Davidson model; arrays broadcast. Shift-invariant in (θa, θb)."""
    d = np.asarray(theta_a, dtype=float) - np.asarray(theta_b, dtype=float)
    return 1.0 / (1.0 + np.exp(-d) + tie * np.exp(-d / 2))


def _as_pairs(x, n_items: int, what: str) -> np.ndarray:
    arr = np.asarray([] if x is None else x, dtype=np.int64).reshape(-1, 2)
    if arr.size and (arr.min() < 0 or arr.max() >= n_items):
        raise ValueError(f"{what} index out of range for n_items={n_items}")
    if arr.size and np.any(arr[:, 0] == arr[:, 1]):
        row = int(np.flatnonzero(arr[:, 0] == arr[:, 1])[0])
        raise ValueError(f"{what} row {row} compares item {arr[row, 0]} with itself")
    return arr


def _log_z_terms(d: np.ndarray, nu: float):
    """log Z, ∂logZ/∂d, ∂²logZ/∂d², ∂logZ/∂logν, ∂²logZ/∂logν², ∂²logZ/∂d∂logν — all stable."""
    h = np.abs(d) / 2
    e1 = np.exp(-h)
    e2 = e1 * e1
    q = 1.0 + e2 + nu * e1
    log_z = h + np.log(q)
    g = np.sign(d) * (1.0 - e2) / (2.0 * q)
    w = ((1.0 + e2) * q - (1.0 - e2) ** 2) / (4.0 * q * q)
    t = nu * e1 / q
    return log_z, g, w, t, t - t * t, -g * t


class _Problem:
    """Negative log posterior over x = [θ (n), β (p), log ν (0 or 1)] and its derivatives."""

    def __init__(self, wins, ties, n, prior_mean, prior_prec, X, coef_sd):
        self.n, self.p = n, X.shape[1]
        self.has_ties = len(ties) > 0
        pairs = np.concatenate([wins, ties])
        self.m = len(pairs)
        self.i, self.j = pairs[:, 0], pairs[:, 1]
        rows = np.repeat(np.arange(self.m), 2)
        cols = pairs.reshape(-1)
        vals = np.tile([1.0, -1.0], self.m)
        self.A = sp.csr_matrix((vals, (rows, cols)), shape=(self.m, n))  # d = A θ
        self.AT = self.A.T.tocsr()
        self.is_win = np.concatenate([np.ones(len(wins)), np.zeros(len(ties))])
        self.n_wins, self.n_ties = len(wins), len(ties)
        self.m0, self.prec, self.X, self.coef_prec = prior_mean, prior_prec, X, 1.0 / coef_sd**2

    def split(self, x):
        th, beta = x[: self.n], x[self.n : self.n + self.p]
        s = x[self.n + self.p] if self.has_ties else -np.inf
        return th, beta, s

    def value_grad(self, x):
        th, beta, s = self.split(x)
        nu = float(np.exp(s))
        d = self.A @ th
        log_z, g, w, t, tt, gt = _log_z_terms(d, nu)
        r = th - self.m0 - self.X @ beta  # (n,) deviation from the prior mean
        f = log_z.sum() - 0.5 * d @ self.is_win + 0.5 * np.sum(self.prec * r * r)
        f += 0.5 * self.coef_prec * beta @ beta
        grad_th = self.AT @ (g - 0.5 * self.is_win) + self.prec * r
        parts = [grad_th, -self.X.T @ (self.prec * r) + self.coef_prec * beta]
        if self.has_ties:
            f += -self.n_ties * s + 0.5 * s * s / _LOG_NU_SD**2
            parts.append(np.array([t.sum() - self.n_ties + s / _LOG_NU_SD**2]))
        self._cache = (w, tt, gt)
        return f, np.concatenate(parts)

    def hess_parts(self):
        """Diagonal weights at the point of the last `value_grad` call."""
        return self._cache

    def hessp(self, v):
        w, tt, gt = self._cache
        n, p = self.n, self.p
        vth, vb = v[:n], v[n : n + p]
        Av = self.A @ vth
        out_th = self.AT @ (w * Av) + self.prec * (vth - self.X @ vb)
        out_b = -self.X.T @ (self.prec * vth) + (self.X.T @ (self.prec[:, None] * self.X)) @ vb + self.coef_prec * vb
        parts = [out_th, out_b]
        if self.has_ties:
            vs = v[-1]
            parts[0] = out_th + self.AT @ gt * vs
            parts.append(np.array([gt @ Av + (tt.sum() + 1.0 / _LOG_NU_SD**2) * vs]))
        return np.concatenate(parts)

    def hess_diag(self):
        w, tt, _ = self._cache
        dth = np.bincount(self.i, w, self.n) + np.bincount(self.j, w, self.n) + self.prec
        parts = [dth, np.einsum("np,n,np->p", self.X, self.prec, self.X) + self.coef_prec]
        if self.has_ties:
            parts.append(np.array([tt.sum() + 1.0 / _LOG_NU_SD**2]))
        return np.concatenate(parts)

    def dense_hessian(self):
        w, tt, gt = self._cache
        n, p = self.n, self.p
        k = n + p + self.has_ties
        H = np.zeros((k, k))
        H[:n, :n] = (self.AT @ sp.diags(w) @ self.A).toarray() + np.diag(self.prec)
        PX = self.prec[:, None] * self.X
        H[:n, n : n + p] = -PX
        H[n : n + p, :n] = -PX.T
        H[n : n + p, n : n + p] = self.X.T @ PX + self.coef_prec * np.eye(p)
        if self.has_ties:
            c = self.AT @ gt
            H[:n, -1] = H[-1, :n] = c
            H[-1, -1] = tt.sum() + 1.0 / _LOG_NU_SD**2
        return H


def fit(
    comparisons,
    n_items: int,
    prior_mean=None,
    prior_sd=1.0,
    ties=None,
    *,
    covariates=None,
    coef_sd: float = 10.0,
    tol: float = 1e-6,
    max_iter: int = 100,
    exact_sd_limit: int = 3000,
) -> Scores:
    """MAP Bradley-Terry scores with Laplace posterior SDs.

    comparisons: (m, 2) int [winner, loser] item indices. ties: (m_t, 2) int tied pairs or None.
    prior_mean: scalar or (n,) fixed prior mean m (default 0). prior_sd: scalar or (n,) s > 0.
    covariates: (n, p) matrix X; the prior mean becomes m + X β with β fitted (prior N(0, coef_sd²)).
    A constant column in X is identified only by that prior, since Bradley-Terry is shift-invariant.
    tol: stop when the largest gradient component is below `tol`.
    """
    if n_items <= 0:
        raise ValueError(f"n_items must be positive, got {n_items}")
    wins = _as_pairs(comparisons, n_items, "comparisons")
    tie_pairs = _as_pairs(ties, n_items, "ties")
    m0 = np.broadcast_to(np.asarray(0.0 if prior_mean is None else prior_mean, dtype=float), (n_items,)).copy()
    sd = np.broadcast_to(np.asarray(prior_sd, dtype=float), (n_items,))
    if not np.all(np.isfinite(sd)) or np.any(sd <= 0):
        raise ValueError("prior_sd must be finite and > 0")
    if not np.all(np.isfinite(m0)):
        raise ValueError("prior_mean must be finite")
    X = np.zeros((n_items, 0)) if covariates is None else np.asarray(covariates, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.shape[0] != n_items or not np.all(np.isfinite(X)):
        raise ValueError(f"covariates must be a finite ({n_items}, p) matrix, got shape {X.shape}")
    if coef_sd <= 0:
        raise ValueError("coef_sd must be > 0")
    prob = _Problem(wins, tie_pairs, n_items, m0, 1.0 / sd**2, X, coef_sd)

    x = np.concatenate([m0, np.zeros(prob.p)])
    if prob.has_ties:
        q = prob.n_ties / prob.m
        x = np.append(x, np.log(2 * q / max(1 - q, 1e-3)))
    f, g = prob.value_grad(x)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        if np.max(np.abs(g)) < tol:
            converged = True
            it -= 1
            break
        diag = prob.hess_diag()
        k = len(x)
        H = LinearOperator((k, k), matvec=prob.hessp, dtype=float)
        M = LinearOperator((k, k), matvec=lambda v: v / diag, dtype=float)
        gnorm = np.linalg.norm(g)
        step, _ = cg(H, -g, M=M, rtol=min(0.1, np.sqrt(gnorm)), maxiter=200)
        slope = g @ step
        if slope >= 0:  # inexact solve gave no descent: fall back to preconditioned gradient
            step = -g / diag
            slope = g @ step
        lr = 1.0
        while True:
            x_new = x + lr * step
            f_new, g_new = prob.value_grad(x_new)
            if f_new <= f + 1e-4 * lr * slope or lr < 1e-8:
                break
            lr *= 0.5
        x, f, g = x_new, f_new, g_new
    else:
        converged = np.max(np.abs(g)) < tol

    th, beta, s = prob.split(x)
    k = len(x)
    if k <= exact_sd_limit:
        H = prob.dense_hessian()
        var = np.diag(np.linalg.inv(H))[:n_items]
    else:
        w, _, _ = prob.hess_parts()
        D = np.bincount(prob.i, w, n_items) + np.bincount(prob.j, w, n_items) + prob.prec
        O = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([prob.i, prob.j]),
                                                   np.concatenate([prob.j, prob.i]))), shape=(n_items, n_items)).tocsr()
        O.sum_duplicates()
        var = 1.0 / D + (O.multiply(O) @ (1.0 / D)) / D**2
    return Scores(
        mean=th.copy(), sd=np.sqrt(np.maximum(var, 0.0)), coef=beta.copy(),
        tie=float(np.exp(s)) if prob.has_ties else 0.0, n_iter=it, converged=bool(converged),
    )
