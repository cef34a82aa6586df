r"""Parameter estimation for compartmental models.

This module holds the gradient fit through the ODE solver, :func:`fit_parameters` (and
:func:`fit_parameters_batch` for many data sets), and the diagnostics it runs after a fit.
Its result type :class:`~epinn.FitResult` and the warnings that qualify it live in
:mod:`epinn.results`, shared by epinn's estimators.

**Gradient fit.** The model is solved with :func:`epinn.compartmental.solve` and its output
is compared with observed series. Free parameters are optimised in an unconstrained space
(:math:`\theta = \log x` for rates, populations and initial states; the logit for a reporting
fraction), so positivity always holds.

* ``loss="mse"`` minimises the residual sum of squares with optimistix's
  Levenberg-Marquardt. Its Jacobians are forward sensitivities: the ODE's derivatives with
  respect to the parameters are integrated alongside the state in one solve (the vector
  field's JVP), and handed to optimistix through a ``jax.custom_jvp`` on the residual
  function. The same solve saves the data times and a fine grid, so the covariance and the
  fitted trajectory come out of the optimiser's last step: the compiled fit holds one ODE
  program, which halves its compilation time against ``jax.jacfwd`` through diffrax
  (``diffrax.ForwardMode``). That is used instead in float32, where the sensitivities'
  ~rtol mismatch with the derivative of the computed solution stalled LM on poorly
  identified fits, and for likelihood losses. With two
  to five parameters LM converges in tens of steps (the boarding-school fit: ~30 steps,
  agreeing with scipy's ``least_squares``), where Adam needs hundreds.
* ``loss="poisson"`` / ``"negbin"`` maximise the likelihood. LM first fits the
  variance-stabilised (Anscombe) residuals :math:`2(\sqrt{y + 3/8} - \sqrt{\mu + 3/8})`,
  an excellent approximation to the Poisson MLE; Newton's method on the gradient of the exact
  negative log-likelihood (forward-over-forward Hessian, a few parameters) then polishes it.
  Reverse mode through the solver is not needed anywhere.

Several starts (jittered around ``init`` in :math:`\theta` space) run in one ``vmap``-ed call
and the best is kept. Standard errors come from the Laplace approximation at the optimum:
the inverse Hessian of the negative log-likelihood in :math:`\theta`, where for ``mse`` the
Gaussian likelihood with profiled variance gives
:math:`\Sigma = \hat\sigma^2 (J^\top J)^{-1}`, :math:`\hat\sigma^2 = \text{RSS}/(n - p)`.
95% intervals are :math:`\theta \pm 1.96\,\text{se}` mapped back (so they stay positive).

Precision: the fits work in float32, but agreement with scipy to better than 1e-3 needs
float64; scripts enable it explicitly with ``jax.config.update("jax_enable_x64", True)``
before creating any array.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array

from ._checks import _check_key
from ._fitting import _full_precision
from ._least_squares import (
    _FIT_OBSERVABLES,
    _as_array,
    _as_number,
    _check_inputs,
    _check_settings,
    _from_theta_np,
    _ode_settings,
    _optimise,
    _Problem,
    _slot,
)
from .compartmental import R0 as _R0
from .compartmental import CompartmentalModel, SolverOptions, Trajectory
from .compartmental._integrate import _integrate, _make_config
from .compartmental._options import _resolve_options
from .results import (  # also importable from here, where they were defined before
    ConvergenceWarning,
    FitResult,
    IdentifiabilityWarning,
    MisfitWarning,
)
from .sharding import shard_map_batch

__all__ = [
    "OBSERVABLES",
    "BOUND_TOL",
    "MAX_LOG_SE",
    "MIN_R2",
    "fit_parameters",
    "fit_parameters_batch",
]

#: Observation names accepted in ``data`` for every model, besides its compartments and the
#: flows whose counts follow from them (``"deaths"`` of SIRD/SEIRD: deaths per interval;
#: ``"cumulative_<flow>"``), as in :func:`epinn.observe`.
OBSERVABLES = _FIT_OBSERVABLES
_Z95 = 1.959963984540054


#: A free parameter is practically unidentified when the Laplace standard deviation of its
#: theta (log x; logit for ``reporting``) exceeds this, or when it takes part in an
#: eigen-direction of the Fisher information with a larger standard deviation: its 95%
#: interval spans more than a factor :math:`e^{2 \cdot 1.96} \approx 50`.
MAX_LOG_SE = 1.0
#: A free parameter is at its bound when moving it alone there lowers the log-likelihood by
#: less than this (a small fraction of the 1.92 of a 95% likelihood-ratio interval).
BOUND_TOL = 0.1
#: :class:`MisfitWarning` when :math:`R^2` (``mse``) or the deviance explained (count
#: losses) is below this.
MIN_R2 = 0.5


# --------------------------------------------------------------------------------------
# Diagnostics: identifiability, bounds and goodness of fit (host side, after a fit)
# --------------------------------------------------------------------------------------


class _Identifiability(NamedTuple):
    """What :func:`_identifiability` found (names in the order of ``free``)."""

    at_bound: tuple[str, ...]
    unidentified: tuple[str, ...]
    r0_trusted: bool
    messages: tuple[str, ...]


def _theta_label(name: str) -> str:
    return f"logit {name}" if name == "reporting" else f"log {name}"


def _bound_of(name: str, theta: float) -> str:
    if name == "phi":
        return "infinity (no overdispersion: the Poisson limit)"
    if name == "reporting":
        return "1" if theta > 0 else "0"
    return "0"


def _identifiability(free, theta, info, drops, g_r0) -> _Identifiability:
    r"""Parameters at a bound, practically unidentified directions, and whether R0's
    interval can be trusted, from the Fisher information ``info`` of theta at the optimum.

    * at a bound: moving the parameter alone to its bound loses less than
      :data:`BOUND_TOL` of log-likelihood (``drops``, from :func:`_bound_drops`);
    * unidentified: among the others, an eigen-direction of the information whose
      standard deviation :math:`1/\sqrt{\lambda}` exceeds :data:`MAX_LOG_SE` (its
      parameters with weight :math:`|v_i| \ge 0.25` are named), or a parameter whose own
      Laplace standard error in theta exceeds it.
    """
    theta = np.asarray(theta, dtype=float)
    drops = np.asarray(drops, dtype=float)
    info = np.asarray(info, dtype=float)
    g_r0 = np.asarray(g_r0, dtype=float)
    at_bound = [k for k, d in zip(free, drops) if d < BOUND_TOL]
    messages = []
    for i, k in enumerate(free):
        if k in at_bound:
            b = _bound_of(k, theta[i])
            messages.append(
                f"{k} is at its bound {b}: the fit with {k} at {b} is as good (log-likelihood "
                f"lower by {max(drops[i], 0.0):.2g}), so its Laplace interval means nothing; "
                f"a likelihood-ratio interval (epinn.profile_likelihood) is one-sided."
            )
    r0_trusted = not any(k in at_bound and abs(g) > 1e-3 for k, g in zip(free, g_r0))
    rest = [i for i, k in enumerate(free) if k not in at_bound]
    unidentified: set[str] = set()
    if rest:
        F = info[np.ix_(rest, rest)]
        if not np.all(np.isfinite(F)):
            unidentified.update(free[i] for i in rest)
            messages.append("the Fisher information at the estimate is not finite.")
            return _Identifiability(tuple(at_bound), tuple(k for k in free if k in unidentified),
                                    False, tuple(messages))
        w, V = np.linalg.eigh(0.5 * (F + F.T))
        tiny = 1e-12 * max(float(np.max(np.abs(w))), 1e-300)
        sd = np.where(w > tiny, 1.0 / np.sqrt(np.maximum(w, tiny)), np.inf)
        var_r0 = 0.0
        for j in np.argsort(-sd):
            v = V[:, j]
            along = float(g_r0[rest] @ v)
            var_r0 += along**2 * (sd[j] ** 2 if np.isfinite(sd[j]) else
                                  (np.inf if abs(along) > 1e-6 else 0.0))
            if sd[j] <= MAX_LOG_SE:
                continue
            order = [m for m in np.argsort(-np.abs(v)) if abs(v[m]) >= 0.25]
            names = [free[rest[m]] for m in order]
            unidentified.update(names)
            factor = (f"a factor {math.exp(2 * _Z95 * sd[j]):.3g}" if np.isfinite(sd[j])
                      and 2 * _Z95 * sd[j] < 700 else "any amount")
            combo = " ".join(f"{v[m]:+.2f} {_theta_label(free[rest[m]])}" for m in order)
            what = (f"{names[0]} is not identified" if len(names) == 1 else
                    f"{', '.join(names[:-1])} and {names[-1]} are not identified separately")
            messages.append(
                f"{what}: along ({combo}) the estimate can move by {factor} (95%, Laplace) "
                "with the fit almost as good."
            )
        se = np.sqrt(np.maximum(np.einsum("ij,j,ij->i", V, np.where(np.isfinite(sd), sd, 0.0)
                                          ** 2, V), 0.0))
        se = np.where(np.any((~np.isfinite(sd))[None, :] & (np.abs(V) > 1e-6), axis=1),
                      np.inf, se)
        for m, i in enumerate(rest):
            if se[m] > MAX_LOG_SE and free[i] not in unidentified:
                unidentified.add(free[i])
                messages.append(
                    f"{free[i]} is not identified: the standard error of "
                    f"{_theta_label(free[i])} is {se[m]:.3g} (> {MAX_LOG_SE})."
                )
        if r0_trusted and not math.sqrt(var_r0) <= MAX_LOG_SE:
            r0_trusted = False
            messages.append(f"R0 is not identified: the standard error of log R0 is "
                            f"{math.sqrt(var_r0):.3g} (> {MAX_LOG_SE}).")
    if at_bound or unidentified:
        messages.append(
            "Fix one of the parameters named (give its value in `init` and leave it out of "
            "`free`), add data that inform it, or use a prior (epinn.fit_epidemic); "
            "epinn.profile_likelihood shows what the data say about each."
        )
    return _Identifiability(tuple(at_bound), tuple(k for k in free if k in unidentified),
                            r0_trusted, tuple(messages))


def _pooled_serial(series):
    """Lag-1 autocorrelation and the Wald-Wolfowitz runs test, pooled over the series.

    Returns ``(rho1, runs_z, runs_p)``; ``runs_p`` is the one-sided p-value of too few
    runs of residual signs (systematic misfit), from the normal approximation.
    """
    num = den = 0.0
    runs = mean = var = 0.0
    for r in series:
        r = np.asarray(r, dtype=float)
        c = r - r.mean()
        num += float(np.sum(c[1:] * c[:-1]))
        den += float(np.sum(c**2))
        s = np.sign(r[r != 0])
        n1, n2 = int(np.sum(s > 0)), int(np.sum(s < 0))
        if n1 and n2:
            n = n1 + n2
            runs += 1 + int(np.sum(s[1:] != s[:-1]))
            mean += 2.0 * n1 * n2 / n + 1
            var += 2.0 * n1 * n2 * (2.0 * n1 * n2 - n) / (n**2 * (n - 1))
    rho = num / den if den > 0 else math.nan
    if var > 0:
        z = (runs - mean) / math.sqrt(var)
        return rho, z, 0.5 * math.erfc(-z / math.sqrt(2.0))
    return rho, math.nan, math.nan


def _deviance(y, mu, loss, phi):
    mu = np.maximum(mu, 1e-300)
    ylog = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0) / mu), 0.0)
    if loss == "poisson":
        return 2.0 * float(np.sum(ylog - (y - mu)))
    return 2.0 * float(np.sum(ylog - (y + phi) * np.log((y + phi) / (mu + phi))))


def _goodness(obs, pred, loss, phi, n_free) -> dict[str, float]:
    r"""Goodness-of-fit statistics of the fitted series (see :class:`FitResult`)."""
    y = {k: np.asarray(v, dtype=float) for k, v in obs.items()}
    mu = {k: np.asarray(pred[k], dtype=float) for k in y}
    rss = sum(float(np.sum((mu[k] - y[k]) ** 2)) for k in y)
    tss = sum(float(np.sum((y[k] - y[k].mean()) ** 2)) for k in y)
    n = sum(v.size for v in y.values())
    out = {"r2": 1.0 - rss / tss if tss > 0 else math.nan}
    if loss == "mse":
        pearson = [mu[k] - y[k] for k in y]
    else:
        ph = math.inf if loss == "poisson" else phi
        sd = {k: np.sqrt(np.maximum(mu[k] + (0 if loss == "poisson" else mu[k] ** 2 / ph),
                                    1e-300)) for k in y}
        pearson = [(y[k] - mu[k]) / sd[k] for k in y]
        dev = sum(_deviance(y[k], mu[k], loss, phi) for k in y)
        dev0 = sum(_deviance(y[k], np.full_like(y[k], y[k].mean()), loss, phi) for k in y)
        out["deviance_explained"] = 1.0 - dev / dev0 if dev0 > 0 else math.nan
        out["dispersion"] = float(sum(np.sum(p**2) for p in pearson)) / max(n - n_free, 1)
    rho, z, p = _pooled_serial(pearson)
    out.update(lag1_autocorrelation=rho, runs_z=z, runs_p=p)
    return out


def _misfit(goodness, loss) -> list[str]:
    """Findings about the fit's shape and noise (empty when none)."""
    msgs = []
    q_name = "r2" if loss == "mse" else "deviance_explained"
    q = goodness[q_name]
    label = "R^2" if loss == "mse" else "deviance explained"
    if math.isfinite(q) and q < MIN_R2:
        msgs.append(
            f"the model explains little of the data ({label} {q:.2f} < {MIN_R2}; residual "
            f"lag-1 autocorrelation {goodness['lag1_autocorrelation']:.2f}, runs-test p "
            f"{goodness['runs_p']:.2g}): it cannot reproduce the data's shape (e.g. several "
            "waves, a changing transmission rate). Its estimates and intervals describe a "
            "curve unlike the data; consider another model (e.g. a time-varying beta, "
            "epinn.fit_neural_beta) or fitting one wave at a time."
        )
    return msgs


#: How far a parameter is pushed towards its bound to test whether it sits there: 30 in
#: theta (a factor e^30 ~ 1e13 for log-parametrised values, a reporting fraction within
#: ~1e-13 of 0 or 1).
_PUSH = 30.0


def _bound_drops(problem: _Problem, theta):
    r"""Log-likelihood lost when each free parameter alone is moved to its bound.

    Rates, initial states are pushed towards 0, ``phi`` towards infinity (the Poisson limit),
    ``reporting`` towards the nearer of 0 and 1; ``N`` has no such bound (``inf``). For
    ``mse`` the drop is that of the Gaussian likelihood with the noise variance fixed at
    :math:`\hat\sigma^2 = \mathrm{RSS}/(n-p)`: :math:`\tfrac{n-p}{2}(\mathrm{RSS}'/
    \mathrm{RSS} - 1)`; for the count losses the increase of the negative log-likelihood.
    """
    P = theta.shape[0]
    sign = []
    for i, k in enumerate(problem.free):
        if k == "reporting":
            sign.append(jnp.where(theta[i] > 0, 1.0, -1.0))
        else:
            key = problem.slots[i][1]
            sign.append(jnp.asarray({"phi": 1.0, "N": 0.0}.get(key, -1.0)))
    push = _PUSH * jnp.diag(jnp.stack(sign).astype(theta.dtype))
    values = jax.vmap(problem.nll)(jnp.concatenate([theta[None], theta + push]))
    base, pushed = values[0], values[1:]
    if problem.loss == "mse":
        scale = max(problem.n - P, 1) / 2.0 / jnp.maximum(base, jnp.finfo(theta.dtype).tiny)
        drops = scale * (pushed - base)
    else:
        drops = pushed - base
    no_bound = jnp.asarray([key == "N" for _, key, _ in problem.slots])
    return jnp.where(no_bound | ~jnp.isfinite(drops), jnp.inf, drops)


@eqx.filter_jit
def _run(problem: _Problem, starts, steps: int, tol: float, fine):
    """Optimise from every start, pick the best and evaluate everything there: one call."""
    if starts.shape[0] == 1:  # no vmap for a single start: a smaller program to compile
        runs = jax.tree.map(lambda x: x[None], _optimise(problem, starts[0], steps, tol))
    else:
        runs = jax.vmap(lambda th: _optimise(problem, th, steps, tol))(starts)
    thetas, losses, solutions = runs.theta, runs.loss, runs.solution
    ok = jnp.isfinite(losses) & jnp.all(jnp.isfinite(thetas), axis=1)
    best = jnp.argmin(jnp.where(ok, losses, jnp.inf))
    solution = None if solutions is None else jax.tree.map(lambda a: a[best], solutions)
    return runs[:-1], best, _finalise(problem, thetas[best], fine, solution), _bound_drops(
        problem, thetas[best])


def _finalise(problem: _Problem, theta, fine, solution=None):
    """Everything evaluated at the optimum.

    ``solution`` is the merged-grid solution at ``theta`` from the optimiser (``mse``
    fits); without it the model is solved here, on the data times and on ``fine``.
    """
    p, y0_hat = problem.unpack(theta)

    def log_r0(t):
        return jnp.log(_R0(problem.model, problem.model_params(problem.unpack(t)[0])))

    if solution is None:
        pred, _, _ = problem.predict(theta)
        traj, _ = problem.solve(theta, ts=fine)
    else:
        ys, cum, steps = solution
        f = np.asarray(problem.fine_idx)
        pred = problem.observe_grid(ys, cum, p)
        ok = jnp.all(jnp.isfinite(ys))
        model = problem.model
        ys = ys[f]
        if model.groups is not None:  # the sensitivity solve's flat states
            ys = ys.reshape(ys.shape[0], len(model.compartments), model.n_groups)
        traj = Trajectory(ts=problem.grid[f], ys=ys, cumulative_infections=cum[f],
                          success=ok, num_steps=steps.astype(jnp.int32),
                          compartments=model.compartments, groups=model.groups)
    return p, y0_hat, jnp.exp(log_r0(theta)), jax.jacfwd(log_r0)(theta), pred, traj


def _to_host(v) -> float | np.ndarray:
    """A scalar as a float, an array (a declared-shape parameter, a state by group) as
    a float64 NumPy array."""
    a = np.asarray(v, dtype=float)
    return float(a) if a.ndim == 0 else a


@_full_precision
def fit_parameters(
    model: CompartmentalModel,
    ts: Any,
    data: Mapping[str, Any],
    *,
    y0: Mapping[str, float],
    init: Mapping[str, float],
    free: Sequence[str] | str | None = None,
    loss: str = "mse",
    optimizer: str = "levenberg_marquardt",
    steps: int = 200,
    n_starts: int = 1,
    start_scale: float = 0.5,
    key: jax.Array | None = None,
    t0: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    tol: float | None = None,
    max_steps: int = 4096,
    warn: bool = True,
    options: SolverOptions | None = None,
) -> FitResult:
    r"""Fit compartmental-model parameters to observed series by gradients through the ODE.

    Minimises :math:`\sum_k \sum_i (\hat y_k(t_i;\theta) - y_{k,i})^2` (``loss="mse"``) or the
    Poisson / negative-binomial negative log-likelihood of the counts
    :math:`y_{k,i} \sim \text{NB}(\mu = \hat y_k(t_i;\theta), \phi)`, with
    :math:`\operatorname{Var} = \mu + \mu^2/\phi`. See the module docstring for the
    optimiser (Levenberg-Marquardt with forward-mode Jacobians, Newton polish for
    likelihoods) and the Laplace intervals.

    Args:
        model: e.g. ``SIR()``, or your own :class:`epinn.Model` (parameters of any
            declared shape; stratified models too).
        ts: observation times (any unit, strictly increasing).
        data: ``{name: counts at ts}`` in the vocabulary of :func:`epinn.observe`:
            compartments (``"I"``, ``"S"``, ...), ``"incidence"`` (new infections in
            ``(t_{i-1}, t_i]`` times ``reporting``), ``"cumulative"`` (new infections since
            ``t0`` times ``reporting``), a flow's name for its counts in ``(t_{i-1}, t_i]``
            (``"deaths"`` of SIRD/SEIRD; an infection flow's counts are times
            ``reporting``) and ``"cumulative_<flow>"``; the flow's count must follow from a
            compartment (:meth:`epinn.Model.count_rule`). With groups, a compartment's
            series is the sum over the groups, shape ``(len(ts),)``, or one series per
            group, ``(len(ts), groups)``. Counts per interval need ``t0``
            before ``ts[0]``: weekly counts for weeks ending at ``ts`` start at ``t0``.
        y0: initial state at ``t0`` by compartment name (with groups: a number for every
            group or one value per group).
        init: initial guesses (and values of fixed parameters): every rate (a number, or
            an array of its declared shape; a number fills an array), ``N`` (default
            ``sum(y0)``), optionally ``reporting`` (default 1) and ``phi`` (``negbin``,
            default 10).
        free: names to fit, one per number: rates, ``"N"``, ``"reporting"``, ``"phi"`` or
            initial states as ``"I0"``, ``"E0"``, ... (then ``S0`` absorbs the change,
            keeping ``sum(y0)``, per group). An array parameter's name frees all its
            entries (``"gamma"`` is ``"gamma[0]"``, ``"gamma[1]"``, ...); one entry is
            ``"C[0,1]"`` (integer indices, negative ones from the end, or group names on
            an axis over the groups: ``"gamma[old]"``); with groups ``"I0"`` frees every
            group's initial state and ``"I0[1]"`` one. Entries are reported under their
            canonical names (``"C[0,1]"``); a free entry must start positive (log
            scale). A sequence of names, or one name as a string (``free="beta"`` is
            ``free=("beta",)``). Default: all rates. A ``y0`` with every infected
            compartment at zero needs one of them here (e.g. ``"I0"``).
        loss: ``"mse"``, ``"poisson"`` or ``"negbin"`` (these two need non-negative integer
            counts in ``data``).
        optimizer: ``"levenberg_marquardt"`` (the only one: it is what converges best here).
        steps: maximum optimiser steps.
        n_starts: number of starts; start 0 is ``init``, the others are jittered by
            ``start_scale`` standard deviations in :math:`\log` space (needs ``key``).
        key: PRNG key for the jitter (one ``jax.random`` key; checked whenever given).
        t0: time of ``y0`` (default ``ts[0]``); e.g. 0 for the boarding school, observed on
            days 1..14.
        rtol, atol, max_steps: shorthand for the fields of ``options`` (see
            :class:`~epinn.SolverOptions`). ``None`` tolerances (the default) depend on the
            precision: 1e-8/1e-10 in float64, 1e-6/1e-8 in float32.
        tol: optimiser tolerance (default 1e-10 in float64, 1e-5 in float32).
        warn: warn (:class:`ConvergenceWarning`) when the fit does not converge, and
            after a converged fit :class:`IdentifiabilityWarning` when parameters are at a
            bound or not identified, :class:`MisfitWarning` when the model cannot
            reproduce the data's shape.
        options: the ODE settings as one :class:`~epinn.SolverOptions`; its fields left
            ``None`` keep the keywords above (a setting given both ways must agree). A fit
            uses ``rtol``, ``atol`` and ``max_steps`` only (it chooses its own solver,
            adjoint and failure handling) and refuses the other fields.

    Returns:
        :class:`FitResult`. ``converged`` is ``False`` (and, with ``warn``, a
        :class:`ConvergenceWarning` says why) when the optimiser's criterion was not met,
        the loss or an estimate is not finite, or the ODE solve fails at the estimate.
        ``at_bound`` and ``unidentified`` name the parameters whose Laplace intervals
        cannot be trusted (those intervals are NaN; the reasons are in ``diagnostics``),
        and ``goodness`` holds :math:`R^2`, residual autocorrelation, a runs test and,
        for counts, deviance explained and dispersion.

    Identifiability is judged at the optimum :math:`\hat\theta` from the Fisher
    information :math:`F` of :math:`\theta` (:math:`J^\top J/\hat\sigma^2` or the
    Hessian of the NLL): a parameter is *at a bound* when setting it alone to the bound
    lowers the log-likelihood by less than :data:`BOUND_TOL`, and parameters are *not
    identified* when an eigenvector :math:`v` of :math:`F` (the others) with
    :math:`1/\sqrt{\lambda} >` :data:`MAX_LOG_SE` gives them weight
    :math:`|v_i| \ge 0.25`, or their own standard error in :math:`\theta` exceeds it.
    :class:`MisfitWarning` is raised when :math:`R^2` (``mse``) or the deviance explained
    (count losses) is below :data:`MIN_R2`.

    Raises:
        ValueError: unknown names, data with NaN or negative counts (or non-integer counts
            for ``"poisson"``/``"negbin"``), lengths not matching ``ts``, ``init`` outside
            the parameter domain, counts above the population, a ``y0`` with nobody
            infected whose infected initial states are not in ``free``, a missing ``key``.
        TypeError: a ``key`` that is not one ``jax.random`` key; ``free`` not names.

    Examples:
        >>> import numpy as np
        >>> from epinn.compartmental import SIR
        >>> ts = np.arange(1.0, 15.0)
        >>> counts = [3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4]
        >>> res = fit_parameters(SIR(), ts, {"I": counts}, y0={"S": 762, "I": 1, "R": 0},
        ...                      init={"beta": 1.0, "gamma": 0.3, "N": 763}, t0=0.0)
        >>> round(res.params["beta"], 2), round(res.params["gamma"], 2), res.converged
        (1.67, 0.44, True)
    """
    opts = _resolve_options(fit_parameters, options, rtol=rtol, atol=atol, max_steps=max_steps)
    if optimizer not in ("levenberg_marquardt", "lm"):
        raise ValueError(f"`optimizer` must be 'levenberg_marquardt'; got {optimizer!r}.")
    steps, n_starts, max_steps, rtol, atol, tol = _check_settings(
        steps=steps, n_starts=n_starts, max_steps=opts.max_steps, rtol=opts.rtol,
        atol=opts.atol, tol=tol)
    ode = _ode_settings(max_steps, rtol, atol)
    start_scale = _as_number("start_scale", start_scale)
    if not math.isfinite(start_scale) or start_scale < 0:
        raise ValueError(f"`start_scale` must be non-negative and finite; got {start_scale}.")
    if n_starts > 1 and key is None:
        raise ValueError("`key` is required when `n_starts` > 1 (the starts are random).")
    if key is not None:
        key = _check_key(key)
    ts, t0, obs, init, free = _check_inputs(model, ts, data, y0, init, free, loss, t0)
    x64 = jnp.asarray(1.0).dtype == jnp.float64
    tol = (1e-10 if x64 else 1e-5) if tol is None else tol
    # The fitted trajectory's grid: 10 points per data interval, at most 1001 (or one per
    # data time). mse fits solve on the data times and this grid at once, so the
    # trajectory comes out of the optimiser (see `_jacobian_once`).
    n_grid = len(ts) + (1 if t0 < ts[0] else 0)
    n_fine = min(10 * n_grid + 1, max(1001, n_grid))
    fine_points = n_fine if loss == "mse" else 0
    problem = _Problem.build(model, ts, t0, obs, y0, init, free, loss, ode,
                             fine_points=fine_points)

    theta0 = jnp.asarray(problem.theta0())
    starts = theta0[None]
    if n_starts > 1:
        jitter = start_scale * jr.normal(key, (n_starts - 1, theta0.size), theta0.dtype)
        starts = jnp.concatenate([starts, theta0 + jitter])
    fine = None  # mse: the fitted trajectory comes from the optimiser's merged grid
    if fine_points == 0:
        fine = np.linspace(problem.grid[0], problem.grid[-1], n_fine)
    runs, best, (p, y0_hat, r0, g, pred, traj), drops = _run(problem, starts, steps, tol, fine)
    thetas, hists, ns, dones, losses_np, covs, infos = jax.device_get(runs)
    best = int(best)
    p, y0_hat, r0, g, pred, drops = jax.device_get((p, y0_hat, r0, g, pred, drops))
    theta = thetas[best]
    # Converged: the optimiser's criterion met, with finite parameters and a successful
    # solve at the estimate (a failed solve scores a constant penalty, where the
    # optimiser's criterion is met at once).
    nonfinite = [k for k, v in zip(free, np.asarray(theta)) if not np.isfinite(v)]
    solved = bool(traj.success) and all(np.all(np.isfinite(v)) for v in pred.values())
    converged = (bool(dones[best]) and bool(np.isfinite(losses_np[best])) and not nonfinite
                 and solved)
    hist = hists[best]
    hist = hist[np.isfinite(hist)]
    cov = covs[best]
    theta_np = np.asarray(theta)
    se_theta = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    params = {k: _to_host(v) for k, v in p.items()}
    y0_out = {k: _to_host(v) for k, v in y0_hat.items()}
    stderr, intervals = {}, {}
    for i, k in enumerate(free):
        lo, mid, hi = (
            float(_from_theta_np(k, theta_np[i] + s * _Z95 * se_theta[i])) for s in (-1, 0, 1)
        )
        # Delta method: d x / d theta is x for log, x (1 - x) for logit.
        d = mid * (1 - mid) if k == "reporting" else mid
        stderr[k] = d * float(se_theta[i])
        intervals[k] = (lo, hi)
    r0 = float(r0)
    se_log_r0 = float(np.sqrt(max(g @ cov @ g, 0.0)))
    with np.errstate(over="ignore"):
        intervals["R0"] = (r0 * float(np.exp(-_Z95 * se_log_r0)),
                           r0 * float(np.exp(_Z95 * se_log_r0)))
    laplace = dict(intervals)
    if not np.all(np.isfinite(se_theta)):
        stderr, intervals = None, None

    ident = _identifiability(free, theta_np, infos[best], drops, g)
    unidentified = ident.unidentified + (() if ident.r0_trusted else ("R0",))
    for k in (*ident.at_bound, *unidentified):
        # An interval that cannot be trusted is not reported as if it could (the Laplace
        # numbers stay in extras["laplace_intervals"]).
        if intervals is not None:
            intervals[k] = (math.nan, math.nan)
        if stderr is not None and k in stderr:
            stderr[k] = math.nan
    fitted = {k: np.asarray(v) for k, v in pred.items()}
    goodness = (_goodness(obs, fitted, loss, params.get("phi", math.nan), len(free))
                if solved else {})
    misfit = _misfit(goodness, loss) if goodness else []
    if not converged and warn:
        _warn_unconverged(steps, float(losses_np[best]), nonfinite, solved, max_steps)
    if converged and warn:
        _warn_diagnostics(ident, misfit)
    return FitResult(
        params=params,
        y0=y0_out,
        loss=float(losses_np[best]),
        loss_history=hist,
        converged=converged,
        free=free,
        R0=r0,
        stderr=stderr,
        intervals=intervals,
        ts=ts,
        fitted=fitted,
        trajectory=traj,
        method={"mse": "least_squares", "poisson": "poisson_mle", "negbin": "negbin_mle"}[loss],
        n_steps=int(ns[best]),
        extras={"start_losses": losses_np.tolist(), "laplace_intervals": laplace,
                "bound_drops": dict(zip(free, np.asarray(drops, dtype=float).tolist()))},
        at_bound=ident.at_bound,
        unidentified=unidentified,
        goodness=goodness,
        diagnostics="\n".join((*ident.messages, *misfit)),
    )


def _warn_diagnostics(ident: _Identifiability, misfit: list[str]) -> None:
    """Warn about parameters the data do not determine and about a misfit."""
    if ident.at_bound or ident.unidentified:
        warnings.warn("fit_parameters: " + " ".join(ident.messages), IdentifiabilityWarning,
                      stacklevel=4)  # the caller of fit_parameters (through _full_precision)
    if misfit:
        warnings.warn("fit_parameters: " + " ".join(misfit), MisfitWarning, stacklevel=4)


def _warn_unconverged(steps, loss, nonfinite, solved, max_steps):
    if nonfinite:
        why = (f"; the estimate of {nonfinite} is not finite (NaN or inf): check `data`, "
               "`init` and `y0`")
    elif not solved:
        why = (f"; the ODE solve fails at the estimate (every start's solves may have "
               f"failed): check `init` and `y0`, or increase `max_steps` ({max_steps})")
    else:
        why = "; increase `steps`, `n_starts` or check `init`"
    warnings.warn(
        f"fit_parameters did not converge in {steps} steps (best loss {loss:.4g}){why}.",
        ConvergenceWarning,
        stacklevel=4,  # the caller of fit_parameters (through _full_precision)
    )


class _BatchOutcome(NamedTuple):
    """The fits of a block of data sets, each field with the block's leading axis."""

    params: dict[str, Array]  # the model's parameters
    y0: dict[str, Array]  # the initial states
    loss: Array  # mean squared residual (mse) or negative log-likelihood
    converged: Array  # the optimiser's criterion met
    steps: Array  # optimiser steps taken
    theta: Array  # the optimum in the unconstrained parameters, (B, P)
    information: Array  # Fisher information of theta, (B, P, P)
    bound_drops: Array  # see `_bound_drops`, (B, P)


class _LMState(NamedTuple):
    """The carry of :class:`_StackedBatchFit`'s loop: every member's Levenberg-Marquardt
    state, ``(B, ...)`` but for the shared step count."""

    step: Array  # iterations taken
    theta: Array  # current point, (B, P)
    residuals: Array  # at theta, (B, n)
    jacobian: Array  # of the residuals at theta, (B, n, P)
    lam: Array  # damping, (B,)
    nu: Array  # damping growth after a rejected step, (B,)
    active: Array  # still iterating, (B,)
    done: Array  # converged, (B,)


@eqx.filter_jit
class _BatchFit(eqx.Module):
    """Fit a block of data sets: ``lax.map`` of vmapped fits, ``batch_size`` at a time."""

    steps: int = eqx.field(static=True)
    tol: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)

    def __call__(self, ys, shared):
        problem, theta0 = shared

        def one(y):
            p = eqx.tree_at(lambda q: q.y, problem, y)
            opt = _optimise(p, theta0, self.steps, self.tol, covariance=False)
            params, y0 = p.unpack(opt.theta)
            return _BatchOutcome(params, y0, opt.loss, opt.converged, opt.steps, opt.theta,
                                 opt.information, _bound_drops(p, opt.theta))

        return jax.lax.map(one, ys, batch_size=min(self.batch_size, _leading(ys)))


class _StackedBatchFit(eqx.Module):
    r"""Least-squares fits of a block of data sets in lockstep, on one stacked ODE.

    All members' states are integrated as one system (compartments x members) with a shared
    step size and every member's error controlled (the ``method="stacked"`` solver of
    :func:`~epinn.compartmental.solve_ensemble`). Fits are independent, so the Jacobian is
    block diagonal: one ``jax.jvp`` per parameter, with that parameter's tangent set for
    every member at once, gives every member's column (diffrax stops gradients through
    the step-size choice, so members do not leak into each other's derivatives). Each
    member then takes its own Levenberg-Marquardt step (Marquardt's diagonal scaling,
    Nielsen's damping update) on its :math:`P \times P` normal equations:

    .. math:: (J_b^\top J_b + \lambda_b \operatorname{diag} J_b^\top J_b)\,\delta_b
        = -J_b^\top r_b,

    accepted when the gain ratio exceeds :math:`10^{-4}`. A member stops when its
    Gauss-Newton decrement :math:`\tfrac12 g^\top (J^\top J)^{-1} g` (with
    :math:`g = J^\top r`) is below ``tol`` times its cost: the largest decrease of the cost
    still available is a fraction ``tol`` of it. The shared step sizes move each member's
    residuals at the ODE tolerance whenever other members move, which puts a floor of
    about :math:`10^{-8}` under that fraction in float64 (rtol 1e-8): the default
    ``tol`` is :math:`10^{-7}`, which gives optima within ~1e-5 (relative) of separate
    fits. Hand-written because optimistix solves one problem at a
    time: under ``jax.vmap`` each member's ODE solve keeps its own step sizes in a
    lockstep loop, several times slower than the stacked solve.
    """

    steps: int = eqx.field(static=True)
    tol: float = eqx.field(static=True)
    batch_size: int = eqx.field(static=True)

    def __call__(self, ys, shared):
        problem, theta0 = shared
        B = _leading(ys)
        k = -(-B // self.batch_size)  # blocks of equal size, the last data set repeated
        size = -(-B // k)

        def to_blocks(a):
            a = jnp.concatenate([a, jnp.repeat(a[-1:], k * size - B, axis=0)], axis=0)
            return a.reshape(k, size, *a.shape[1:])

        out = jax.lax.map(lambda y: self.block(problem, theta0, y),
                          jax.tree_util.tree_map(to_blocks, ys))
        return jax.tree_util.tree_map(lambda a: a.reshape(k * size, *a.shape[2:])[:B], out)

    def block(self, problem, theta0, y):
        B, P, tol = _leading(y), theta0.shape[0], self.tol
        cfg = _make_config(problem.ode._replace(adjoint=diffrax.ForwardMode(), throw=False))
        tangents = jnp.broadcast_to(jnp.eye(P, dtype=theta0.dtype)[:, None, :], (P, B, P))

        def r_and_J(th):
            f = lambda t: _stacked_residuals(problem, cfg, t, y)  # noqa: E731
            r, Jt = jax.vmap(lambda v: jax.jvp(f, (th,), (v,)), out_axes=(None, 0))(tangents)
            return r, jnp.transpose(Jt, (1, 2, 0))  # (B, n), (B, n, P)

        def body(c: _LMState) -> _LMState:
            th, r, J, lam, nu, active, done = (c.theta, c.residuals, c.jacobian, c.lam, c.nu,
                                               c.active, c.done)
            g = jnp.einsum("bnp,bn->bp", J, r)
            A = jnp.einsum("bnp,bnq->bpq", J, J)
            f = 0.5 * jnp.sum(r**2, 1)
            # Converged when the Gauss-Newton decrement g^T A^-1 g / 2 -- the decrease of
            # the cost that a full step would bring -- is below tol x cost. (A test on the
            # change of the cost would not do: the shared step sizes move every member's
            # residuals at the ODE tolerance whenever another member moves.)
            dec = 0.5 * jnp.sum(g * jnp.linalg.solve(A, g[..., None])[..., 0], 1)
            conv = active & jnp.isfinite(dec) & (dec <= tol * f)
            done, active = done | conv, active & ~conv
            scale = jnp.maximum(jnp.diagonal(A, axis1=1, axis2=2), 1e-12)
            M = A + lam[:, None, None] * jax.vmap(jnp.diag)(scale)
            delta = -jnp.linalg.solve(M, g[..., None])[..., 0]
            delta = jnp.where(active[:, None] & jnp.isfinite(delta), delta, 0.0)
            r_new, J_new = r_and_J(th + delta)
            f_new = 0.5 * jnp.sum(r_new**2, 1)
            predicted = -(jnp.sum(g * delta, 1) + 0.5 * jnp.einsum("bp,bpq,bq->b", delta, A,
                                                                    delta))
            rho = (f - f_new) / jnp.where(predicted > 0, predicted, jnp.inf)
            accept = active & jnp.isfinite(f_new) & (rho > 1e-4)
            keep = lambda new, old: jnp.where(  # noqa: E731
                accept.reshape(-1, *([1] * (new.ndim - 1))), new, old)
            lam = jnp.where(accept, lam * jnp.maximum(1 / 3, 1 - (2 * rho - 1) ** 3),
                            jnp.minimum(lam * nu, 1e16))
            nu = jnp.where(accept, 2.0, 2.0 * nu)
            th, r, J = keep(th + delta, th), keep(r_new, r), keep(J_new, J)
            stuck = lam >= 1e16  # no step is accepted any more: give up (not converged)
            return _LMState(step=c.step + 1, theta=th, residuals=r, jacobian=J, lam=lam, nu=nu,
                            active=active & ~stuck, done=done)

        th = jnp.broadcast_to(theta0, (B, P))
        r, J = r_and_J(th)
        A_diag = jnp.sum(J**2, 1)
        lam = 1e-3 * jnp.max(A_diag, 1) / jnp.maximum(jnp.max(A_diag, 1), 1e-12)
        init = _LMState(step=0, theta=th, residuals=r, jacobian=J, lam=lam,
                        nu=jnp.full((B,), 2.0, th.dtype), active=jnp.ones(B, bool),
                        done=jnp.zeros(B, bool))
        end = jax.lax.while_loop(lambda c: (c.step < self.steps) & jnp.any(c.active), body,
                                 init)
        th, r, J = end.theta, end.residuals, end.jacobian
        params, y0 = jax.vmap(problem.unpack)(th)
        mse = jnp.mean(r**2, 1)
        sigma2 = jnp.sum(r**2, 1) / max(problem.n - P, 1)
        info = jnp.einsum("bnp,bnq->bpq", J, J) / sigma2[:, None, None]
        return _BatchOutcome(params, y0, mse, end.done, jnp.full((B,), end.step), th, info,
                             _stacked_bound_drops(problem, cfg, th, y, mse))


def _stacked_bound_drops(problem: _Problem, cfg, th, y, mse):
    """:func:`_bound_drops` of every member (``mse``), one stacked solve per parameter."""
    B, P = th.shape
    pushed = []
    for i, k in enumerate(problem.free):
        sign = jnp.where(th[:, i] > 0, 1.0, -1.0) if k == "reporting" else -1.0
        pushed.append(th.at[:, i].add(sign * _PUSH))
    # All P pushes of all B members as one stacked solve of P * B members.
    y_all = jax.tree.map(lambda a: jnp.tile(a, (P,) + (1,) * (a.ndim - 1)), y)
    r = _stacked_residuals(problem, cfg, jnp.concatenate(pushed), y_all)
    scale = max(problem.n - P, 1) / 2.0 / jnp.maximum(mse, jnp.finfo(th.dtype).tiny)
    d = scale * (jnp.mean(r**2, 1).reshape(P, B) - mse)
    no_bound = jnp.asarray([key == "N" for _, key, _ in problem.slots])[:, None]
    return jnp.where(no_bound | ~jnp.isfinite(d), jnp.inf, d).T


def _stacked_residuals(problem: _Problem, cfg, thetas, y):
    """Residuals ``(B, n)`` of every member, from one stacked solve."""
    model = problem.model
    ps, y0s = jax.vmap(problem.unpack)(thetas)
    mp = problem.model_params(ps)
    N = mp["N"]
    rates = {k: mp[k] for k in (*model.rate_names, "N")}
    x0 = jnp.stack([y0s[c] for c in model.compartments]) / N  # (C, B)
    xs, cum, ok, _ = _integrate(model, rates, x0, problem.grid, cfg)  # (T, C, B), (T, B)
    pred = jax.vmap(problem.observe)(jnp.moveaxis(xs * N, -1, 0), (cum * N).T, ps)
    r = jnp.concatenate([pred[k] - y[k] for k in problem.names], axis=-1)
    return jnp.where(ok & jnp.all(jnp.isfinite(r), axis=1, keepdims=True), r, 1e6)


def _leading(tree) -> int:
    return jax.tree_util.tree_leaves(tree)[0].shape[0]


@_full_precision
def fit_parameters_batch(
    model: CompartmentalModel,
    ts: Any,
    data: Mapping[str, Any],
    *,
    y0: Mapping[str, float],
    init: Mapping[str, float],
    free: Sequence[str] | str | None = None,
    loss: str = "mse",
    steps: int = 200,
    t0: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    tol: float | None = None,
    max_steps: int = 4096,
    batch_size: int = 128,
    mesh: Mesh | None | bool = None,
    method: str | None = None,
    warn: bool = False,
    options: SolverOptions | None = None,
) -> dict[str, np.ndarray]:
    r"""Fit many data sets with the same model and set-up in one compiled call.

    Each entry of ``data`` carries a leading batch axis, ``(B, len(ts))``; every data set
    gets the fit :func:`fit_parameters` would give it from the single start ``init``
    (Levenberg-Marquardt through the solver), ``batch_size`` data sets at a time with
    ``jax.lax.map`` to bound memory. No intervals are computed.

    * ``method="vmap"`` (default; any loss): optimistix's solver under ``jax.vmap``, each
      fit with its own ODE step sizes; the same iterates as :func:`fit_parameters` (for
      ``mse``, on forward-sensitivity Jacobians).
    * ``method="stacked"`` (``loss="mse"``): the block's fits run in lockstep on one
      stacked ODE with a shared step size and a block-diagonal Jacobian (see
      ``_StackedBatchFit``), several times faster than ``"vmap"`` on CPU (see the
      benchmarks page), with optima within ~1e-5 of separate fits on well-posed problems
      (``tol`` is then a relative Gauss-Newton decrement, default 1e-7 in float64, 1e-5 in
      float32). Its hand-written
      Levenberg-Marquardt is less robust than optimistix's: on poorly identified fits in
      float32 (e.g. four free parameters from a short incidence window) members can stall
      and are reported unconverged. Check ``converged``.

    Args:
        model, ts, y0, init, free, loss, steps, t0, tol: as :func:`fit_parameters`.
        rtol, atol, max_steps: shorthand for the fields of ``options``, as in
            :func:`fit_parameters`.
        data: ``{name: (B, len(ts)) array}``.
        batch_size: fits vectorised together (one stacked ODE with ``"stacked"``).
        method: ``"vmap"`` (None, the default) or ``"stacked"``.
        mesh: devices to spread the data sets over (:mod:`epinn.sharding`): a
            ``jax.sharding.Mesh``, ``None`` (default) for all devices, ``False`` for the
            default device only. Each device fits a contiguous block of data sets; the
            results come back in input order.

        warn: warn (:class:`IdentifiabilityWarning`, once, with counts) when some data
            sets have parameters at a bound or not identified. Off by default: a batch
            reports them as arrays (below) and does not warn, as it does not warn about
            convergence either.
        options: the ODE settings as one :class:`~epinn.SolverOptions`, as in
            :func:`fit_parameters` (``rtol``, ``atol`` and ``max_steps`` only).

    Returns:
        ``{name: (B,) array}`` for every parameter and initial state, plus ``"loss"``,
        ``"converged"`` (``False`` also where an estimate is not finite), ``"n_steps"``,
        and ``"at_bound"``, ``"unidentified"``: ``(B, len(free))`` booleans, columns in
        the order of ``free`` (the criteria of :attr:`FitResult.at_bound` and
        :attr:`FitResult.unidentified`).

    Raises:
        ValueError: as :func:`fit_parameters`, for any data set of the batch.

    Examples:
        >>> import numpy as np
        >>> from epinn.compartmental import SIR
        >>> counts = np.array([3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4.])
        >>> out = fit_parameters_batch(SIR(), np.arange(1.0, 15.0),
        ...                            {"I": np.stack([counts, 0.9 * counts])},
        ...                            y0={"S": 762, "I": 1, "R": 0},
        ...                            init={"beta": 1.0, "gamma": 0.3, "N": 763}, t0=0.0)
        >>> out["beta"].shape, bool(out["converged"].all())
        ((2,), True)
    """
    opts = _resolve_options(fit_parameters_batch, options, rtol=rtol, atol=atol,
                            max_steps=max_steps)
    if not isinstance(data, Mapping) or not data:
        raise ValueError("`data` must be a non-empty mapping {observation name: (B, T) array}.")
    arrays = {k: _as_array(f"data[{k!r}]", v) for k, v in data.items()}
    shapes = {k: a.shape for k, a in arrays.items()}
    if any(a.ndim not in (2, 3) for a in arrays.values()) or len(
            {s[0] for s in shapes.values()}) != 1:
        raise ValueError(f"`data` arrays must all be (B, len(ts)) (or (B, len(ts), groups) "
                         f"for a compartment by group); got shapes {shapes}.")
    if next(iter(shapes.values()))[0] == 0:
        raise ValueError(f"`data` holds no data sets (an empty batch); got shapes {shapes}.")
    steps, batch_size, max_steps, rtol, atol, tol = _check_settings(
        steps=steps, batch_size=batch_size, max_steps=opts.max_steps, rtol=opts.rtol,
        atol=opts.atol, tol=tol)
    if method not in (None, "stacked", "vmap"):
        raise ValueError(f"`method` must be None, 'stacked' or 'vmap'; got {method!r}.")
    # Validate every data set (plain numpy, cheap) through the single-fit checks.
    first = {k: a[0] for k, a in arrays.items()}
    ts_, t0_, _, init_, free_ = _check_inputs(model, ts, first, y0, init, free, loss, t0)
    for b in range(1, next(iter(arrays.values())).shape[0]):
        _check_inputs(model, ts, {k: a[b] for k, a in arrays.items()}, y0, init, free, loss, t0)
    x64 = jnp.asarray(1.0).dtype == jnp.float64
    method = "vmap" if method is None else method
    if tol is None and method == "stacked":
        tol = 1e-7 if x64 else 1e-5
    tol = (1e-10 if x64 else 1e-5) if tol is None else tol
    problem = _Problem.build(model, ts_, t0_, first, y0, init_, free_, loss,
                             _ode_settings(max_steps, rtol, atol))
    ys = {k: jnp.asarray(a) for k, a in arrays.items()}
    if method == "stacked":
        if loss != "mse":
            raise ValueError(f"`method='stacked'` needs loss='mse'; got loss={loss!r}.")
        if model.groups is not None:
            raise ValueError("`method='stacked'` fits unstratified models; use method='vmap' "
                             f"for {model.name} (groups {model.groups}).")
        # No optimistix inside: shard_map works, and each device fits its own block.
        fits = shard_map_batch(
            _StackedBatchFit(int(steps), float(tol), int(batch_size)), ys, mesh=mesh,
            shared=(problem, jnp.asarray(problem.theta0())),
        )
    else:
        fits = shard_map_batch(
            _BatchFit(int(steps), float(tol), int(batch_size)), ys, mesh=mesh,
            shared=(problem, jnp.asarray(problem.theta0())), partitioner="gspmd",
        )
    return _pack_batch(model, fits, init_, free_, warn)


def _pack_batch(model, fits: _BatchOutcome, init, free, warn) -> dict[str, np.ndarray]:
    """:func:`fit_parameters_batch`'s output from the block fits (and its warning)."""
    params, y0s = fits.params, fits.y0
    out = {k: np.asarray(v) for k, v in params.items() if k in init}
    slots = [_slot(model, k) for k in free]
    freed = {key for kind, key, _ in slots if kind == "state"}
    out.update({f"{c}0": np.asarray(v) for c, v in y0s.items() if c in freed})
    for k, (kind, key, index) in zip(free, slots):
        if index:  # an entry of an array: its own (B,) column too
            out[k] = np.asarray(params[key] if kind == "param" else y0s[key])[(slice(None),
                                                                            *index)]
    # A data set whose estimate is not finite is not converged, whatever the optimiser said.
    finite = np.all([np.isfinite(v).reshape(v.shape[0], -1).all(1) for v in out.values()],
                    axis=0)
    losses = np.asarray(fits.loss)
    out.update(loss=losses, converged=np.asarray(fits.converged) & np.isfinite(losses) & finite,
               n_steps=np.asarray(fits.steps))
    thetas, infos, drops = (np.asarray(a, dtype=float)
                            for a in (fits.theta, fits.information, fits.bound_drops))
    at_bound = np.zeros(thetas.shape, bool)
    unidentified = np.zeros(thetas.shape, bool)
    for b in range(thetas.shape[0]):
        # A zero R0 gradient: R0's interval is not reported by batches.
        ident = _identifiability(free, thetas[b], infos[b], drops[b], np.zeros(len(free)))
        at_bound[b] = [k in ident.at_bound for k in free]
        unidentified[b] = [k in ident.unidentified for k in free]
    out.update(at_bound=at_bound, unidentified=unidentified)
    if warn and (at_bound.any() or unidentified.any()):
        counts = ", ".join(f"{k} at a bound in {int(at_bound[:, i].sum())}, not identified "
                           f"in {int(unidentified[:, i].sum())}" for i, k in enumerate(free)
                           if at_bound[:, i].any() or unidentified[:, i].any())
        warnings.warn(
            f"fit_parameters_batch: of {thetas.shape[0]} data sets, {counts} (see "
            "out['at_bound'] and out['unidentified'], columns in the order of `free`). Fix "
            "a parameter, add data or use a prior; epinn.profile_likelihood shows what the "
            "data say.", IdentifiabilityWarning,
            stacklevel=4)  # the caller of fit_parameters_batch (through _full_precision)
    return out
