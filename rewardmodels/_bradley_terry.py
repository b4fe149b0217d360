"""Bayesian Bradley-Terry: MAP latent scores with a Gaussian prior, covariates, ties, Laplace SDs.

Model (Davidson 1970 for ties; plain Bradley-Terry when there are none), with d = θ_i - θ_j::

    P(i beats j) = e^{d/2} / Z,   P(tie) = ν / Z,   Z = e^{d/2} + e^{-d/2} + ν
    θ ~ N(m + X β, s²),   β ~ N(0, coef_sd²),   log ν ~ N(0, 2²)

With ν = 0, P(i beats j) = σ(d). The negative log posterior is strongly convex in (θ, β, log ν)
(a log-sum-exp of affine functions plus Gaussian priors), so a damped Newton method finds the
unique MAP; items with no comparisons sit at their prior mean and disconnected comparison graphs
are fine. Small problems take exact Newton steps (dense Cholesky); large ones solve the Newton
system by Jacobi-preconditioned conjugate gradients, matrix-free through the sparse m x n
incidence matrix. Near the optimum the objective's decrease drowns in rounding long before the
gradient stops shrinking, so the line search judges such steps by the gradient norm, and the
stopping test knows the gradient's own rounding level: the result says why the solver stopped.

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
from scipy.linalg import cho_factor, cho_solve
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
    converged: bool = True  # the gradient fell below the tolerance (or its rounding level)
    reason: str = ""  # why the solver stopped, in words

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


_EPS = np.finfo(float).eps


def _prepare(comparisons, n_items, prior_mean, prior_sd, ties, covariates, coef_sd) -> _Problem:
    """Check the inputs and build the problem; every error names the argument at fault."""
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
    if not np.isfinite(coef_sd) or coef_sd <= 0:
        raise ValueError("coef_sd must be finite and > 0")
    return _Problem(wins, tie_pairs, n_items, m0, 1.0 / sd**2, X, coef_sd)


def _newton_step(prob: _Problem, g: np.ndarray, dense: bool) -> np.ndarray:
    """Solve H s = -g: by Cholesky for small problems (exact), else by Jacobi-preconditioned CG.

    H is positive definite everywhere (the priors on θ, β and log ν make the posterior strongly
    convex), so the Cholesky factorisation exists; CG's relative tolerance shrinks with the
    gradient (forcing term min(0.1, √‖g‖)), which keeps the inexact Newton method superlinear.
    """
    if dense:
        return -cho_solve(cho_factor(prob.dense_hessian()), g)
    k = len(g)
    diag = prob.hess_diag()
    H = LinearOperator((k, k), matvec=prob.hessp, dtype=float)
    M = LinearOperator((k, k), matvec=lambda v: v / diag, dtype=float)
    step, _ = cg(H, -g, M=M, rtol=min(0.1, np.sqrt(np.linalg.norm(g))), maxiter=max(200, k))
    if g @ step >= 0:  # an inexact solve gave no descent: preconditioned gradient instead
        step = -g / diag
    return step


def _line_search(prob: _Problem, x, f, g, step, noise: float):
    """Backtracking from the full Newton step -> (x, f, g), or None when no step helps.

    Armijo on f, f(x + a s) <= f(x) + 1e-4 a gᵀs, as long as the predicted decrease -a gᵀs is
    resolvable in floating point. Near the optimum it is not (it falls below `noise`, the rounding
    error of f), and comparing f values accepts or rejects at random; there the step is judged by
    what Newton's method really drives to zero, the gradient: accepted when ‖g‖ shrinks.
    """
    slope, gnorm, lr = g @ step, np.linalg.norm(g), 1.0
    while lr >= 1e-10:
        x_new = x + lr * step
        f_new, g_new = prob.value_grad(x_new)
        if -lr * slope > noise:
            if f_new <= f + 1e-4 * lr * slope:
                return x_new, f_new, g_new
        elif np.linalg.norm(g_new) < gnorm:
            return x_new, f_new, g_new
        lr *= 0.5
    prob.value_grad(x)  # leave the Hessian cache at x
    return None


def _gradient_floor(prob: _Problem, x) -> float:
    """The rounding level of the largest gradient component at x: below it, ‖g‖ cannot shrink.

    Each component is a sum of terms of size at most 1 per comparison plus the prior's pull, so
    its rounding error is about eps times the sum of the terms' magnitudes.
    """
    th, beta, _ = prob.split(x)
    deg = np.bincount(prob.i, minlength=prob.n) + np.bincount(prob.j, minlength=prob.n)
    pull = prob.prec * (np.abs(th) + np.abs(prob.m0) + np.abs(prob.X) @ np.abs(beta))
    return 64 * _EPS * float(np.max(deg + pull, initial=1.0) + prob.m)


def _posterior_sd(prob: _Problem, x, exact_sd_limit: int) -> np.ndarray:
    """Laplace SDs of θ: exact diag(H⁻¹) when small, else the two-term Neumann lower bound."""
    n = prob.n
    if len(x) <= exact_sd_limit:
        var = np.diag(cho_solve(cho_factor(prob.dense_hessian()), np.eye(len(x))))[:n]
    else:
        w, _, _ = prob.hess_parts()
        D = np.bincount(prob.i, w, n) + np.bincount(prob.j, w, n) + prob.prec
        O = sp.coo_matrix((np.concatenate([w, w]), (np.concatenate([prob.i, prob.j]),
                                                   np.concatenate([prob.j, prob.i]))), shape=(n, n)).tocsr()
        O.sum_duplicates()
        var = 1.0 / D + (O.multiply(O) @ (1.0 / D)) / D**2
    return np.sqrt(np.maximum(var, 0.0))


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
    dense_limit: int = 1500,
) -> Scores:
    """MAP Bradley-Terry scores with Laplace posterior SDs, by damped Newton.

    comparisons: (m, 2) int [winner, loser] item indices. ties: (m_t, 2) int tied pairs or None.
    prior_mean: scalar or (n,) fixed prior mean m (default 0). prior_sd: scalar or (n,) s > 0.
    covariates: (n, p) matrix X; the prior mean becomes m + X β with β fitted (prior N(0, coef_sd²)).
    A constant column in X is identified only by that prior, since Bradley-Terry is shift-invariant.
    tol: stop when the largest gradient component is below `tol`, or below the rounding level of
    the gradient if that is larger (`Scores.reason` then says so). Problems with at most
    `dense_limit` parameters take exact Newton steps (Cholesky), larger ones CG steps.
    `Scores.converged` is False, with the reason, when `max_iter` runs out or no step helps.
    """
    if tol <= 0 or max_iter < 0:
        raise ValueError(f"need tol > 0 and max_iter >= 0, got tol={tol}, max_iter={max_iter}")
    prob = _prepare(comparisons, n_items, prior_mean, prior_sd, ties, covariates, coef_sd)
    x = np.concatenate([prob.m0, np.zeros(prob.p)])
    if prob.has_ties:
        q = prob.n_ties / prob.m
        x = np.append(x, np.log(2 * q / max(1 - q, 1e-3)))
    f, g = prob.value_grad(x)
    dense = len(x) <= dense_limit
    it, reason = 0, f"max_iter={max_iter} reached"
    while True:
        gmax, floor = float(np.max(np.abs(g), initial=0.0)), _gradient_floor(prob, x)
        if gmax < tol:
            reason = f"max |gradient| {gmax:.2e} < tol {tol:.2e}"
            break
        if gmax <= floor:
            reason = f"max |gradient| {gmax:.2e} at its rounding level {floor:.2e} (> tol {tol:.2e})"
            break
        if it == max_iter:
            break
        moved = _line_search(prob, x, f, g, _newton_step(prob, g, dense), noise=64 * _EPS * (abs(f) + 1.0))
        if moved is None:
            reason = f"no step decreases the objective or the gradient (max |gradient| {gmax:.2e})"
            break
        x, f, g = moved
        it += 1
    converged = reason.startswith("max |gradient|")
    th, beta, s = prob.split(x)
    return Scores(
        mean=th.copy(), sd=_posterior_sd(prob, x, exact_sd_limit), coef=beta.copy(),
        tie=float(np.exp(s)) if prob.has_ties else 0.0, n_iter=it, converged=converged, reason=reason,
    )
