r"""Profile likelihood: likelihood-ratio intervals for parameters and for :math:`R_0`.

For a quantity :math:`\psi` (a free parameter of :func:`epinn.estimation.fit_parameters`, or
the derived :math:`R_0`) the profile log-likelihood is

.. math:: \ell_p(\psi) = \max_{\lambda} \ell(\psi, \lambda),

the log-likelihood maximised over the other free parameters :math:`\lambda` with
:math:`\psi` held fixed. By Wilks' theorem :math:`2(\hat\ell - \ell_p(\psi))` is
asymptotically :math:`\chi^2_1`, so the 95% likelihood-ratio interval is

.. math:: \{\psi : \hat\ell - \ell_p(\psi) \le \tfrac12 \chi^2_{1, 0.95} = 1.92\}.

Unlike the Laplace interval it follows the likelihood's shape, is invariant to
reparametrisation and reaches a bound honestly: where the profile does not rise above the
threshold before a parameter's bound (a rate at 0, a reporting fraction at 1), the
interval is one-sided and ends at the bound (Raue et al. 2009, the practical
identifiability analysis of Data2Dynamics).

Every point of the profile is a fit of the other parameters, run as a ``vmap`` of
epinn's Levenberg-Marquardt fits over a block of grid values (the batch-fit machinery of
:mod:`epinn.estimation`), so one compilation serves the whole profile. The grid is
adaptive: a first block around the estimate, blocks further out until the profile crosses
the threshold (or reaches the bound), then blocks inside the two crossings' brackets until
they are narrow; the crossings are interpolated linearly within them.

For ``loss="mse"`` the log-likelihood is Gaussian with the noise variance fixed at the
full fit's estimate :math:`\hat\sigma^2 = \mathrm{RSS}/(n-p)`, the variance behind the
Laplace intervals: :math:`\hat\ell - \ell_p = (\mathrm{RSS}_p - \mathrm{RSS})/(2\hat\sigma^2)`,
so both intervals agree for a model linear in its parameters. For ``"poisson"`` and
``"negbin"`` it is the exact count likelihood.

:math:`R_0` is profiled by reparametrisation: with :math:`R_0` fixed, ``beta`` follows
from it and the other rates (:math:`R_0` is proportional to ``beta`` in every built-in
model), and the others are re-optimised.

References:
    Raue A. et al. (2009). Structural and practical identifiability analysis of partially
    observed dynamical models by exploiting the profile likelihood. Bioinformatics
    25(15):1923-1929.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._fitting import _full_precision
from ._least_squares import (
    _as_count,
    _check_inputs,
    _check_settings,
    _from_theta_np,
    _lookup,
    _ode_settings,
    _optimise,
    _parse_free,
    _Problem,
    _slot,
    _to_theta,
)
from .compartmental import R0 as _R0
from .compartmental import CompartmentalModel, SolverOptions
from .compartmental._options import _resolve_options
from .estimation import fit_parameters
from .results import FitResult

__all__ = ["Profile", "plot_profile", "profile_likelihood"]


class Profile(NamedTuple):
    r"""A profile likelihood and its likelihood-ratio interval.

    Attributes:
        name: the profiled quantity (a parameter name, ``"I0"``-style initial state, or
            ``"R0"``).
        values: the grid of values of the quantity, increasing.
        delta: :math:`\hat\ell - \ell_p` at ``values`` (0 at the estimate, >= 0 up to the
            optimiser's tolerance).
        others: ``{name: array}``, the re-optimised other free parameters at ``values``.
        converged: whether each point's fit converged.
        estimate: the full fit's estimate of the quantity.
        interval: the likelihood-ratio interval ``(lo, hi)``; an end where the profile does
            not rise above ``threshold`` is the quantity's bound (0, 1 for a reporting
            fraction, ``inf``).
        one_sided: ``"lower"``, ``"upper"`` or ``"both"`` for the ends that are bounds
            rather than crossings, else ``None``.
        threshold: :math:`\tfrac12 \chi^2_{1,\text{level}}` (1.92 at 95%).
        level: the confidence level.
        fit: the full fit the profile is measured from.
    """

    name: str
    values: np.ndarray
    delta: np.ndarray
    others: dict[str, np.ndarray]
    converged: np.ndarray
    estimate: float
    interval: tuple[float, float]
    one_sided: str | None
    threshold: float
    level: float
    fit: FitResult


# Limits of the adaptive grid in the working coordinate u (log, or logit for reporting):
# a side that has not risen within `_FAR` (a factor e^40 ~ 2e17) is taken to reach its
# bound; the grid grows at most `_MAX_ROUNDS` blocks outwards.
_FAR = 40.0
_MAX_ROUNDS = 12


def _coordinate(name: str, x: float) -> float:
    return _to_theta("reporting" if name == "reporting" else "x", x)


def _value(name: str, u: np.ndarray) -> np.ndarray:
    return np.array([_from_theta_np("reporting" if name == "reporting" else "x", float(v))
                     for v in np.atleast_1d(u)])


def _bounds(name: str) -> tuple[float, float]:
    return (0.0, 1.0) if name == "reporting" else (0.0, math.inf)


def _with_value(problem: _Problem, name: str, v):
    """``problem`` with the profiled quantity held at ``v`` (an array leaf)."""
    kind, key, index = _slot(problem.model, name)
    if kind == "param":
        new = problem.base[key].at[index].set(v) if index else v
        return eqx.tree_at(lambda q: q.base[key], problem, new)
    # an initial state: S takes up the difference, keeping the total
    total = sum(problem.y0.values())
    y0 = {**problem.y0, key: problem.y0[key].at[index].set(v) if index else v}
    y0["S"] = total - sum(y0[k] for k in problem.model.compartments if k != "S")
    return eqx.tree_at(lambda q: q.y0, problem, y0)


@eqx.filter_jit
def _profile_block(problem: _Problem, name: str, values, starts, steps: int, tol: float):
    """Fits of the other parameters at each value of ``name``: one vmapped call."""
    if problem.free:
        def one(v, th0):
            p = _with_value(problem, name, v)
            opt = _optimise(p, th0, steps, tol, covariance=False)
            return opt.theta, opt.loss, opt.converged

        return jax.vmap(one)(values, starts)

    def loss_at(v):  # nothing else is free: the profile is the likelihood itself
        p = _with_value(problem, name, v)
        empty = jnp.zeros((0,), values.dtype)
        loss = jnp.sum(p.residuals(empty) ** 2) / p.n if p.loss == "mse" else p.nll(empty)
        return empty, loss, jnp.asarray(True)

    return jax.vmap(loss_at)(values)


def _check_parameter(model, parameter, free, init):
    if not isinstance(parameter, str):
        raise TypeError(f"`parameter` must be a name such as 'beta' or 'R0'; got {parameter!r}.")
    if parameter == "R0":
        if "beta" not in free:
            raise ValueError("`parameter='R0'` is profiled through beta: put 'beta' in `free`.")
        p = {k: init[k] for k in (*model.rate_names, "N")}
        one = float(_R0(model, {**p, "beta": 1.0}))
        two = float(_R0(model, {**p, "beta": 2.0}))
        if not math.isclose(two, 2.0 * one, rel_tol=1e-9):
            raise ValueError(f"R0 of {type(model).__name__} is not proportional to beta; "
                             "`parameter='R0'` cannot be profiled through it.")
        return
    if parameter not in free:
        raise ValueError(f"`parameter` must be one of the free parameters {free} or 'R0'; "
                         f"got {parameter!r}.")


@_full_precision
def profile_likelihood(
    model: CompartmentalModel,
    ts: Any,
    data: Mapping[str, Any],
    *,
    y0: Mapping[str, float],
    init: Mapping[str, float],
    parameter: str,
    free: Sequence[str] | str | None = None,
    loss: str = "mse",
    t0: float | None = None,
    grid: Any = None,
    n_grid: int = 16,
    level: float = 0.95,
    fit: FitResult | None = None,
    refine: int = 4,
    steps: int = 200,
    rtol: float | None = None,
    atol: float | None = None,
    tol: float | None = None,
    max_steps: int = 4096,
    options: SolverOptions | None = None,
) -> Profile:
    r"""Profile the likelihood of a fit in one parameter or in :math:`R_0`.

    .. math:: \hat\ell - \ell_p(\psi) \le \tfrac12\chi^2_{1,\text{level}}

    defines the likelihood-ratio interval (see the module docstring). The other free
    parameters are re-optimised at every grid value, ``n_grid`` values per vectorised
    block.

    Args:
        model, ts, data, y0, init, free, loss, t0, steps, tol: the fit, as
            :func:`epinn.estimation.fit_parameters`.
        rtol, atol, max_steps: shorthand for the fields of ``options``, as in
            :func:`~epinn.estimation.fit_parameters` (``None`` tolerances depend on the
            precision).
        parameter: a name in ``free`` (a rate, ``"reporting"``, ``"phi"``, ``"N"``, an
            initial state such as ``"I0"``) or ``"R0"`` (``beta`` must be free).
        grid: values of the quantity to evaluate (all positive; in (0, 1) for
            ``reporting``). Default: adaptive, from the estimate out to the crossings.
            With a grid, the interval is found within it (refined inside it), and an end
            beyond the grid is reported as the grid's end with ``one_sided`` set.
        n_grid: grid values per vectorised block (the first block's size).
        level: confidence level of the interval (0.95: threshold 1.92).
        fit: the full fit (a :class:`~epinn.FitResult` of the same problem)
            to start from; fitted here (without warnings) when not given.
        refine: blocks spent narrowing each crossing's bracket (each narrows it by a
            factor ``n_grid // 2 + 1``).
        options: the ODE settings as one :class:`~epinn.SolverOptions`, as in
            :func:`~epinn.estimation.fit_parameters` (``rtol``, ``atol`` and ``max_steps``
            only); they also go to the full fit when ``fit`` is not given.

    Returns:
        :class:`Profile`.

    Raises:
        ValueError: as :func:`~epinn.estimation.fit_parameters`; a ``parameter`` that is
            not free (or ``"R0"`` without a free ``beta``); a bad ``grid``, ``level`` or
            ``n_grid``.

    Examples:
        >>> import numpy as np
        >>> from epinn.compartmental import SIR
        >>> counts = [3, 8, 26, 76, 225, 298, 258, 233, 189, 128, 68, 29, 14, 4]
        >>> prof = profile_likelihood(SIR(), np.arange(1.0, 15.0), {"I": counts},
        ...                           y0={"S": 762, "I": 1, "R": 0},
        ...                           init={"beta": 1.0, "gamma": 0.3, "N": 763}, t0=0.0,
        ...                           parameter="beta")
        >>> lo, hi = prof.interval
        >>> bool(lo < 1.67 < hi), prof.one_sided, round(prof.threshold, 2)
        (True, None, 1.92)
    """
    opts = _resolve_options(profile_likelihood, options, rtol=rtol, atol=atol,
                            max_steps=max_steps)
    n_grid, steps, max_steps, rtol, atol, tol = _check_settings(
        n_grid=n_grid, steps=steps, max_steps=opts.max_steps, rtol=opts.rtol, atol=opts.atol,
        tol=tol)
    refine = _as_count("refine", refine, minimum=0)
    if n_grid < 4:
        raise ValueError(f"`n_grid` must be at least 4; got {n_grid}.")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ValueError(f"`level` must be a number in (0, 1); got {level!r}.")
    ts_, t0_, obs, init_, free_ = _check_inputs(model, ts, data, y0, init, free, loss, t0)
    if isinstance(parameter, str) and parameter != "R0" and "[" in parameter:
        # one entry of an array, written as in `free` ("gamma[old]", "C[0, 1]"): its
        # canonical name ("gamma[1]", "C[0,1]")
        parameter = _parse_free(model, (parameter,), init_, y0, loss)[0]
    _check_parameter(model, parameter, free_, init_)
    grid = _check_grid(grid, parameter)
    ode = _ode_settings(max_steps, rtol, atol)
    tol = (1e-10 if jnp.asarray(1.0).dtype == jnp.float64 else 1e-5) if tol is None else tol
    if fit is None:
        fit = fit_parameters(model, ts_, obs, y0=y0, init=init_, free=free_, loss=loss,
                             t0=t0_, steps=steps, tol=tol, warn=False, options=ode.options())
    elif not isinstance(fit, FitResult) or set(fit.free) != set(free_):
        raise ValueError(f"`fit` must be the FitResult of this problem (free {free_}).")

    sweep = _Sweep.build(model, ts_, t0_, obs, init_, free_, loss, fit, parameter,
                         n_grid=n_grid, steps=steps, tol=tol, ode=ode)
    threshold = statistics.NormalDist().inv_cdf(0.5 + level / 2) ** 2 / 2
    if grid is not None:
        sweep.evaluate(np.concatenate([[sweep.u_hat],
                                       [_coordinate(parameter, g) for g in grid]]))
    else:
        _widen(sweep, _initial_span(fit, parameter), threshold)
    _refine(sweep, refine, threshold)
    return _pack_profile(sweep, threshold, level, bounded=grid is None)


def _check_grid(grid: Any, parameter: str) -> np.ndarray | None:
    """A user's ``grid`` of values of ``parameter`` as a float array (``None`` stays)."""
    if grid is None:
        return None
    grid = np.asarray(grid, dtype=float)
    lo_b, hi_b = _bounds(parameter)
    if grid.ndim != 1 or grid.size < 2 or not np.all((grid > lo_b) & (grid < hi_b)):
        raise ValueError(f"`grid` must be 1-D with at least 2 values in ({lo_b}, {hi_b}) "
                         f"for {parameter!r}; got {grid!r:.80}.")
    return grid


class _Sweep:
    """The profile problem and the points evaluated on it so far.

    The profiled quantity leaves ``free`` (the others stay free); :math:`R_0` enters the
    base parameters and ties ``beta``. Points are kept in the coordinate ``u`` (log, or
    logit for ``reporting``) in the order they were evaluated.
    """

    def __init__(self, problem, parameter, others, estimate, theta_hat, fit, *, n_full,
                 n_grid, steps, tol):
        self.problem, self.parameter, self.others = problem, parameter, others
        self.estimate, self.theta_hat, self.fit = estimate, theta_hat, fit
        self.n_full, self.n_grid, self.steps, self.tol = n_full, n_grid, steps, tol
        self.u_hat = _coordinate(parameter, estimate)
        self.pts_u, self.pts_loss, self.pts_theta, self.pts_done = [], [], [], []

    @classmethod
    def build(cls, model, ts, t0, obs, init, free, loss, fit, parameter, *, n_grid, steps,
              tol, ode) -> _Sweep:
        tied = "beta" if parameter == "R0" else parameter
        others = tuple(k for k in free if k != tied)
        estimate = fit.R0 if parameter == "R0" else _estimate(fit, parameter)
        base = {**init, **{k: v for k, v in fit.params.items() if k in init}}
        y0_hat = dict(fit.y0)
        if parameter == "R0":
            base["R0"] = estimate
        problem = _Problem.build(model, ts, t0, obs, y0_hat, base, others, loss, ode)
        theta_hat = np.array([_to_theta(k, _estimate(fit, k)) for k in others])
        return cls(problem, parameter, others, estimate, theta_hat, fit, n_full=len(free),
                   n_grid=n_grid, steps=steps, tol=tol)

    def delta_of(self, losses, ref):
        r"""The profile deviance :math:`\hat\ell - \ell_p` of ``losses`` against ``ref``."""
        if self.problem.loss == "mse":
            n, p_full = self.problem.n, self.n_full
            return (n - p_full) / 2.0 * (losses / ref - 1.0) if ref > 0 else losses * np.inf
        return losses - ref

    def evaluate(self, us) -> None:
        """Fit the others at each ``u`` (blocks of ``n_grid``, padded) and record them."""
        us = np.asarray(us, dtype=float)
        k, n_grid, parameter = us.size, self.n_grid, self.parameter
        pad = np.concatenate([us, np.repeat(us[-1:], (-k) % n_grid)])
        starts = np.stack([_nearest_start(u, self.pts_u, self.pts_theta, self.theta_hat,
                                          _coordinate(parameter, self.estimate)) for u in pad]
                          ) if self.others else np.zeros((pad.size, 0))
        for i in range(0, pad.size, n_grid):
            th, ls, dn = jax.device_get(_profile_block(
                self.problem, parameter, jnp.asarray(_value(parameter, pad[i:i + n_grid])),
                jnp.asarray(starts[i:i + n_grid]), self.steps, self.tol))
            self.pts_u.extend(pad[i:i + n_grid][: max(0, k - i)])
            m = len(pad[i:i + n_grid][: max(0, k - i)])
            self.pts_loss.extend(np.asarray(ls, float)[:m])
            self.pts_theta.extend(np.asarray(th, float)[:m])
            self.pts_done.extend(np.asarray(dn, bool)[:m])

    def current(self):
        """``(u, delta, order)``: the points so far sorted by ``u`` and their deviance."""
        order = np.argsort(self.pts_u)
        u = np.asarray(self.pts_u)[order]
        ls = np.asarray(self.pts_loss)[order]
        ok = np.isfinite(ls)
        ref_full = self.fit.loss
        ref = min(ref_full, float(np.min(ls[ok]))) if ok.any() else ref_full
        return u, self.delta_of(ls, ref), order


def _widen(sweep: _Sweep, span: float, threshold: float) -> None:
    """A first block of width ``2 span`` around the estimate, then blocks outwards on each
    side until the profile has risen above ``threshold`` there (or the side is used up)."""
    n_grid, u_hat = sweep.n_grid, sweep.u_hat
    sweep.evaluate(u_hat + span * np.linspace(-1.0, 1.0, n_grid - 1 + n_grid % 2))
    # A side ends _FAR beyond the estimate or beyond u = 0 (x = 1 for a log, 1/2 for
    # a logit), whichever is further: an estimate at a bound (u ~ -60 for a rate at
    # 1e-26) still has its profile followed up to ordinary values.
    far = {-1: min(u_hat, 0.0) - _FAR, 1: max(u_hat, 0.0) + _FAR}
    for _ in range(_MAX_ROUNDS):
        u, d, _ = sweep.current()
        todo = []
        for side in (-1, 1):
            outer = u[0] if side < 0 else u[-1]
            risen = d[0] > threshold if side < 0 else d[-1] > threshold
            room = abs(far[side] - outer)
            if not risen and room > 1e-9:
                step = min(2 * max(abs(outer - u_hat), span), room)
                todo.append(outer + side * step * np.linspace(1, n_grid // 2, n_grid // 2)
                            / (n_grid // 2))
        if not todo:
            break
        sweep.evaluate(np.concatenate(todo))


def _refine(sweep: _Sweep, rounds: int, threshold: float) -> None:
    """Up to ``rounds`` times, fill the grid intervals that bracket a threshold crossing."""
    for _ in range(rounds):
        u, d, _ = sweep.current()
        todo = [np.linspace(a, b, sweep.n_grid // 2 + 2)[1:-1]
                for a, b in _brackets(u, d, threshold)]
        if not todo:
            break
        sweep.evaluate(np.concatenate(todo))


def _pack_profile(sweep: _Sweep, threshold: float, level: float, *, bounded: bool) -> Profile:
    """The :class:`Profile` of the points evaluated: the interval from the threshold
    crossings (at a side without one, the bound of the quantity when the grid was chosen
    here, else the last value of the user's grid)."""
    parameter, others = sweep.parameter, sweep.others
    u, d, order = sweep.current()
    lo_u, hi_u, sides = _crossings(u, d, threshold, sweep.u_hat)
    lo_b, hi_b = _bounds(parameter)
    lo = _value(parameter, [lo_u])[0] if lo_u is not None else (lo_b if bounded else
                                                                _value(parameter, [u[0]])[0])
    hi = _value(parameter, [hi_u])[0] if hi_u is not None else (hi_b if bounded else
                                                                _value(parameter, [u[-1]])[0])
    thetas = np.asarray(sweep.pts_theta).reshape(len(sweep.pts_u), len(others))[order]
    return Profile(
        name=parameter,
        values=_value(parameter, u),
        delta=d,
        others={k: _value(k, thetas[:, i]) for i, k in enumerate(others)},
        converged=np.asarray(sweep.pts_done)[order],
        estimate=float(sweep.estimate),
        interval=(float(lo), float(hi)),
        one_sided=sides,
        threshold=float(threshold),
        level=float(level),
        fit=sweep.fit,
    )


def _estimate(fit: FitResult, name: str) -> float:
    """The estimate of a free name (an entry ``"C[0,1]"`` of an array too)."""
    return _lookup(name, fit.params, fit.y0)


def _initial_span(fit: FitResult, name: str) -> float:
    """Half-width of the first block in u: ~1.5x the Laplace 95% half-width, in [0.05, 2]."""
    lap = fit.extras.get("laplace_intervals", fit.intervals or {}).get(name)
    if lap is not None and all(math.isfinite(v) and v > 0 for v in lap):
        try:
            half = 0.5 * abs(_coordinate(name, lap[1]) - _coordinate(name, lap[0]))
        except (ValueError, ZeroDivisionError):
            half = math.nan
        if math.isfinite(half) and half > 1e-9:  # (zero at a bound: the default)
            return float(np.clip(1.5 * half, 0.05, 2.0))
    return 1.0


def _nearest_start(u, pts_u, pts_theta, theta_hat, u_hat):
    """Warm start: the others' estimates at the evaluated point nearest to ``u``."""
    if not pts_u:
        return theta_hat
    i = int(np.argmin(np.abs(np.asarray(pts_u) - u)))
    th = np.asarray(pts_theta[i])
    if abs(pts_u[i] - u) > abs(u_hat - u) or not np.all(np.isfinite(th)):
        return theta_hat
    return th


def _brackets(u, d, threshold):
    """The grid intervals in which the profile crosses ``threshold`` (outermost crossings
    from the minimum), where the bracket is still wider than 1e-7 in u."""
    out = []
    i0 = int(np.nanargmin(d))
    below = d <= threshold
    for idx in (range(i0, 0, -1), range(i0, len(u) - 1)):
        for i in idx:
            j = i - 1 if idx.step < 0 else i + 1
            if below[i] and not below[j]:
                if abs(u[i] - u[j]) > 1e-7:
                    out.append((u[j], u[i]) if j < i else (u[i], u[j]))
                break
    return out


def _crossings(u, d, threshold, u_hat):
    """Linear interpolation of the threshold crossings; ``None`` where none (a bound)."""
    i0 = int(np.nanargmin(d))
    lo = hi = None
    for i in range(i0, 0, -1):
        if d[i - 1] > threshold >= d[i]:
            lo = u[i - 1] + (threshold - d[i - 1]) * (u[i] - u[i - 1]) / (d[i] - d[i - 1])
            break
    for i in range(i0, len(u) - 1):
        if d[i + 1] > threshold >= d[i]:
            hi = u[i] + (threshold - d[i]) * (u[i + 1] - u[i]) / (d[i + 1] - d[i])
            break
    sides = {(True, True): "both", (True, False): "lower", (False, True): "upper"}.get(
        (lo is None, hi is None))
    return lo, hi, sides


def plot_profile(profile: Profile, ax: Any = None, *, label: str | None = None) -> Any:
    r"""Draw a profile: :math:`\hat\ell - \ell_p` against the quantity, with the threshold,
    the estimate and the interval.

    Args:
        profile: from :func:`profile_likelihood`.
        ax: a matplotlib ``Axes`` to draw on (default: a new figure's).
        label: legend label of the curve (default: the quantity's name).

    Returns:
        The ``Axes``.

    Examples:
        >>> from epinn.compartmental import SIR
        >>> from epinn.datasets import load_boarding_school
        >>> school = load_boarding_school()
        >>> prof = profile_likelihood(SIR(), school.t, {"I": school.counts}, y0=school.y0,
        ...                           init={"beta": 1.0, "gamma": 0.3, "N": 763}, t0=0.0,
        ...                           parameter="gamma")
        >>> ax = plot_profile(prof)
        >>> ax.get_xlabel()
        'gamma'
    """
    import matplotlib.pyplot as plt  # noqa: PLC0415 (drawing is optional)

    if not isinstance(profile, Profile):
        raise TypeError(f"`profile` must be a Profile; got {type(profile).__name__}.")
    new = ax is None
    if new:
        _, ax = plt.subplots(figsize=(5, 3.5))
    ok = np.isfinite(profile.delta)
    ax.plot(profile.values[ok], profile.delta[ok], "o-", ms=3, label=label or profile.name)
    ax.axhline(profile.threshold, color="grey", ls="--",
               label=f"{profile.level:.0%} threshold ({profile.threshold:.2f})")
    ax.axvline(profile.estimate, color="k", lw=0.8)
    lo, hi = profile.interval
    shown_hi = hi if math.isfinite(hi) else float(np.max(profile.values))
    ax.axvspan(lo, shown_hi, color="C1", alpha=0.15,
               label="interval" + (f" (one-sided: {profile.one_sided})"
                                   if profile.one_sided else ""))
    top = max(3.0 * profile.threshold, 1.0)
    ax.set_ylim(-0.05 * top, top)
    ax.set_xlabel(profile.name)
    ax.set_ylabel(r"$\hat\ell - \ell_p$")
    if profile.name != "reporting" and np.ptp(np.log(profile.values[ok])) > 3:
        ax.set_xscale("log")
    ax.legend(fontsize="small")
    if new:
        ax.figure.tight_layout()
    return ax
