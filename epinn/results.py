r"""What a fit returns, and the warnings that qualify it.

Every estimator of epinn that produces a point estimate returns a :class:`FitResult`: the
least-squares fit through the solver (:func:`epinn.fit_parameters`, also the full fit of
:func:`epinn.profile_likelihood`), the neural transmission rate
(:func:`epinn.fit_neural_beta`), the physics-informed network (:func:`epinn.fit_pinn`) and
the amortized estimator (:meth:`epinn.NeuralEstimator.estimate`). The result carries the
estimates, their 95% intervals, the fitted series and trajectory, and what the estimator
found about them (parameters at a bound or not identified, goodness of fit); it reads them
back as a table (:meth:`FitResult.report`) or a JSON-friendly dictionary
(:meth:`FitResult.summary`).

Three warnings say when a result that looks valid should not be trusted as is:
:class:`ConvergenceWarning` (the optimiser stopped before its criterion was met),
:class:`IdentifiabilityWarning` (the data do not determine some parameters) and
:class:`MisfitWarning` (the model cannot reproduce the data's shape). They are
``UserWarning`` subclasses, so ``warnings.simplefilter("error", IdentifiabilityWarning)``
turns one into an exception; :func:`epinn.run_nuts` uses :class:`ConvergenceWarning` too.

This module sits below the estimators, which import the result type from here and never
from each other.

Examples:
    >>> import numpy as np
    >>> from epinn.results import FitResult
    >>> res = FitResult(params={"beta": 1.67, "gamma": 0.44, "N": 763.0}, y0={"S": 762.0},
    ...                 loss=12.5, loss_history=np.array([40.0, 12.5]), converged=True,
    ...                 free=("beta", "gamma"), R0=3.8,
    ...                 intervals={"beta": (1.6, 1.74), "gamma": (0.42, 0.46),
    ...                            "R0": (3.6, 4.0)})
    >>> print(res.report())
    least_squares: loss 12.5, converged True
      name           estimate     95% interval
      beta           1.67         (1.6, 1.74)
      gamma          0.44         (0.42, 0.46)
      R0             3.8          (3.6, 4)
      recovery_time  2.2727       (2.174, 2.381)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._least_squares import _lookup
from .compartmental import Trajectory

__all__ = [
    "ConvergenceWarning",
    "FitResult",
    "IdentifiabilityWarning",
    "MisfitWarning",
]


class ConvergenceWarning(UserWarning):
    """A fit stopped before its convergence criterion was met."""


class IdentifiabilityWarning(UserWarning):
    """The data do not determine some parameters: an estimate at a bound or a flat ridge.

    The message names the parameters and what to do: fix one, add data, or use a prior.
    """


class MisfitWarning(UserWarning):
    """The fitted model cannot reproduce the data's shape (low :math:`R^2`)."""


@dataclass(frozen=True)
class FitResult:
    r"""The result of a parameter estimate (shared by epinn's estimators).

    Attributes:
        params: every model parameter (fitted and fixed) plus ``N`` (and ``reporting``,
            ``phi`` where used), as floats (NumPy arrays for parameters declared with a
            shape).
        y0: initial state by compartment name (arrays by group for stratified models).
        loss: final value of the objective (mean squared residual for ``"mse"``, negative
            log-likelihood for ``"poisson"``/``"negbin"``).
        loss_history: objective per optimiser step of the best start (for likelihood
            losses: the Levenberg-Marquardt stage's Anscombe objective, then the NLL of
            the Newton stage).
        converged: whether the optimiser met its tolerance with a finite loss (each
            estimator states its criterion; never with a non-finite estimate).
        free: names of the fitted quantities, one per number (array entries as
            ``"C[0,1]"``).
        stderr: standard errors of the free quantities (Laplace), or ``None``.
        intervals: 95% intervals ``{name: (lo, hi)}`` for the free quantities and ``R0``.
        ts: observation times; ``fitted``: model predictions at ``ts`` per observed name.
        trajectory: the fitted solution on a fine grid from ``t0`` to ``ts[-1]`` (10 points
            per data interval, at most 1001 or one per data time).
        R0: basic reproduction number at the estimate.
        method: a short label of the estimator.
        n_steps: optimiser steps taken by the best start.
        extras: anything method-specific (e.g. all starts' losses; for
            :func:`fit_parameters` the raw Laplace intervals ``"laplace_intervals"`` and
            the log-likelihood lost by moving each parameter to its bound,
            ``"bound_drops"``).
        at_bound: free parameters whose estimate is at a bound of their domain (a rate or
            an initial state at 0, a reporting fraction at 0 or 1, ``phi`` at infinity):
            moving one there loses less than :data:`~epinn.estimation.BOUND_TOL` of
            log-likelihood. Their ``intervals`` and ``stderr`` are NaN (a likelihood-ratio
            interval from :func:`epinn.profile.profile_likelihood` is one-sided), and so is
            ``R0``'s when it depends on them.
        unidentified: free parameters (and ``"R0"``) that the data do not determine in
            practice: their Laplace 95% interval would span more than a factor ~50
            (:data:`~epinn.estimation.MAX_LOG_SE`), alone or along a near-flat direction of
            the likelihood they share with others. Their ``intervals`` and ``stderr`` are
            NaN.
        goodness: goodness of fit: ``r2`` (:math:`1 - \text{RSS}/\text{TSS}`, TSS about
            each series' mean), ``lag1_autocorrelation`` of the (Pearson) residuals,
            ``runs_z``/``runs_p`` (Wald-Wolfowitz runs test of residual signs; a small
            ``runs_p`` means too few runs, i.e. systematic misfit), and for count losses
            ``deviance_explained`` (:math:`1 - D/D_0` against a constant mean) and
            ``dispersion`` (Pearson :math:`\chi^2/(n - p)`; well above 1 means
            overdispersion, e.g. use ``loss="negbin"``).
        diagnostics: the findings behind ``at_bound``, ``unidentified`` and a misfit, in
            words (one per line; empty when there are none).
    """

    params: dict[str, float]
    y0: dict[str, float]
    loss: float
    loss_history: np.ndarray
    converged: bool
    free: tuple[str, ...]
    R0: float
    stderr: dict[str, float] | None = None
    intervals: dict[str, tuple[float, float]] | None = None
    ts: np.ndarray | None = None
    fitted: dict[str, np.ndarray] | None = None
    trajectory: Trajectory | None = None
    method: str = "least_squares"
    n_steps: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    at_bound: tuple[str, ...] = ()
    unidentified: tuple[str, ...] = ()
    goodness: dict[str, float] = field(default_factory=dict)
    diagnostics: str = ""

    def note(self, name: str) -> str | None:
        """Why the interval of ``name`` is not reported (``"at bound"``, ``"not
        identified"``, ``"depends on a parameter at its bound"``), or ``None``."""
        if name in self.at_bound:
            return "at bound"
        if name in self.unidentified:
            if name == "R0" and any(k in self.at_bound for k in self.free):
                return "depends on a parameter at its bound"
            return "not identified"
        if name == "recovery_time":
            return self.note("gamma")
        return None

    def report(self) -> str:
        """A plain-text table of the estimates with 95% intervals, or the reason there is
        none, followed by the goodness of fit and the diagnostics."""
        s = self.summary()
        rows = []
        for k, v in s.items():
            if (not isinstance(v, (dict, float, int)) or isinstance(v, bool)
                    or (isinstance(v, dict) and "mean" not in v)):
                continue
            if isinstance(v, dict):
                why = v.get("note")
                ci = f"({v['lo']:.4g}, {v['hi']:.4g})" if why is None else why
                rows.append(f"  {k:<14} {v['mean']:<12.5g} {ci}")
            elif k != "loss":
                rows.append(f"  {k:<14} {v:<12.5g}")
        lines = [f"{self.method}: loss {self.loss:.6g}, converged {self.converged}",
                 f"  {'name':<14} {'estimate':<12} 95% interval", *rows]
        if self.goodness:
            lines.append("  goodness: " + ", ".join(f"{k} {v:.3g}"
                                                   for k, v in self.goodness.items()))
        if self.diagnostics:
            lines += ["  " + m for m in self.diagnostics.splitlines()]
        return "\n".join(lines)

    @property
    def recovery_time(self) -> float:
        """Mean infectious period :math:`1/\\gamma` (in the time unit of ``ts``)."""
        return 1.0 / self.params["gamma"]

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary: point estimates, intervals (``{"mean","lo","hi"}``), loss."""
        out: dict[str, Any] = {}
        keys = [k for k in ("beta", "gamma", "sigma", "mu", "omega")
                if k in self.params and np.ndim(self.params[k]) == 0]
        for k in keys:
            out[k] = self._entry(k, self.params[k])
        out["R0"] = self._entry("R0", self.R0)
        if "gamma" in keys:
            rec = self.recovery_time
            if self.intervals and "gamma" in self.intervals:
                lo, hi = self.intervals["gamma"]
                out["recovery_time"] = {"mean": rec, "lo": 1.0 / hi, "hi": 1.0 / lo}
                if self.note("gamma"):
                    out["recovery_time"]["note"] = self.note("gamma")
            else:
                out["recovery_time"] = rec
        for k in self.free:
            if k not in out:
                out[k] = self._entry(k, _lookup(k, self.params, self.y0))
        out["loss"] = self.loss
        out["converged"] = self.converged
        if self.at_bound or self.unidentified:
            out["at_bound"] = list(self.at_bound)
            out["unidentified"] = list(self.unidentified)
        if self.goodness:
            out["goodness"] = dict(self.goodness)
        return out

    def _entry(self, name: str, value: float) -> Any:
        if self.intervals and name in self.intervals:
            lo, hi = self.intervals[name]
            entry = {"mean": float(value), "lo": float(lo), "hi": float(hi)}
            if self.note(name):  # NaN ends, and why
                entry["note"] = self.note(name)
            return entry
        return float(value)
