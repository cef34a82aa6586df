"""The trained amortised estimator (private): :class:`NeuralEstimator`.

The class holds the trained state and states the public methods; their work is done by
the sibling modules, one concept each: training (``_train``), the network's posterior
(``_posterior``), the out-of-prior checks (``_trust``), one outbreak as a
:class:`~epinn.FitResult` (``_estimate``), held-out evaluation (``_evaluate``) and
persistence (``_io``).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jaxtyping import Array, ArrayLike

from .._checks import _check_flag
from ..compartmental import CompartmentalModel
from ..data import Standardizer
from ..models import MLP
from ..results import FitResult
from ..training import History
from ._estimate import _estimate
from ._evaluate import _evaluate
from ._io import _config, _load, _save
from ._posterior import _check_curves, _log_posterior, _summarise, _z
from ._prior import Prior
from ._setup import _resolve, _Spec
from ._train import _train
from ._trust import _outside, _warn


@dataclasses.dataclass(frozen=True, eq=False)
class NeuralEstimator:
    r"""A trained amortised estimator of a model's parameters (and :math:`R_0`) from one curve.

    Build one with :meth:`train`; use it with :meth:`predict` (many curves),
    :meth:`estimate` (one outbreak, as a :class:`~epinn.FitResult`) and :meth:`evaluate`
    (held-out simulations); keep it with :meth:`save` / :meth:`load`. :mod:`epinn.amortized`
    describes the training set, the features, the loss and where the estimator can be
    trusted.

    Attributes:
        ts: the observation grid it reads (curves must be on exactly this grid).
        t0: time of the simulated initial state.
        prior: the training :class:`Prior`.
        model: the compartmental model of the simulations (any :class:`~epinn.Model`
            that :func:`simulate_training_set` takes).
        fixed: the model's other (fixed) parameters.
        observe: ``"prevalence"`` or ``"incidence"``.
        noise: the training noise model.
        hidden: hidden layer sizes of the MLP.
        activation: the MLP's hidden activation (a name).
        targets: names of the estimated quantities (log scale), in output order.
        net_params: the MLP's parameters.
        x_scaler, y_scaler: :class:`~epinn.Standardizer` of the features and log-targets.
        feature_range: ``(lo, hi)`` of every feature over the training curves.
        log_range: ``(lo, hi)`` of the log of each estimated model parameter and of
            ``R0`` (:attr:`box`) in training.
        peak_range: ``(first, last)`` index of the peak over the training curves.
        history: the :class:`~epinn.History` of the training run (``None`` if unknown).
        simulator: the simulator of the training set (``"ode"`` or a stochastic one, see
            :func:`simulate_training_set`).
        dt: the step of an approximate stochastic simulator (else ``None``).
        seed_compartment: the compartment of the initially infected (``None``: default).

    Examples:
        Training simulates thousands of outbreaks and compiles the training loop, so
        this is not run here:

        >>> import jax.random as jr, epinn
        >>> est = epinn.examples.boarding_school.train_estimator(jr.PRNGKey(0))  # doctest: +SKIP
        >>> data = epinn.load_boarding_school()
        >>> res = est.estimate(data.t, data.counts, data.population)  # doctest: +SKIP
        >>> res.summary()["R0"]  # doctest: +SKIP
        {'mean': 3.24..., 'lo': 2.86..., 'hi': 3.67...}
    """

    ts: tuple[float, ...]
    t0: float
    prior: Prior
    model: CompartmentalModel
    fixed: dict[str, float]
    observe: str
    noise: str
    hidden: tuple[int, ...]
    activation: str
    targets: tuple[str, ...]
    net_params: Any
    x_scaler: Standardizer
    y_scaler: Standardizer
    feature_range: tuple[Array, Array]
    log_range: tuple[Array, Array]
    peak_range: tuple[int, int]
    history: History | None = None
    simulator: str = "ode"
    dt: float | None = None
    seed_compartment: str | None = None

    # ---- construction ----------------------------------------------------------------

    @functools.cached_property
    def _spec(self) -> _Spec:
        return _resolve(self.model, self.prior, self.fixed, self.seed_compartment,
                        self.observe)[1]

    @property
    def box(self) -> tuple[str, ...]:
        """The estimated model parameters and ``R0``: checked against the prior box."""
        return tuple(k for k in self.targets if k not in ("I0", "reporting"))

    @property
    def network(self) -> MLP:
        """The Flax MLP (outputs ``[means, log-variances]`` of the standardised targets)."""
        return MLP((*self.hidden, 2 * len(self.targets)), activation=self.activation)

    @classmethod
    def train(
        cls,
        key: jax.Array,
        ts: ArrayLike,
        *,
        prior: Prior,
        model: CompartmentalModel | None = None,
        fixed: Mapping[str, float] | None = None,
        t0: float | None = None,
        observe: str = "prevalence",
        noise: str = "negbin",
        simulator: str = "ode",
        dt: float | None = None,
        seed_compartment: str | None = None,
        n_train: int = 20000,
        n_val: int = 2000,
        hidden: Sequence[int] = (128, 128),
        activation: str = "elu",
        epochs: int = 150,
        batch_size: int = 256,
        learning_rate: float = 2e-3,
        patience: int = 30,
        verbose: int = 0,
    ) -> NeuralEstimator:
        r"""Simulate a training set from ``prior`` and train the network on it.

        Adam with a cosine-decaying learning rate, minibatches of ``batch_size``, early
        stopping on the validation NLL (best parameters restored).

        Args:
            key: PRNG key; the same key gives the same estimator.
            ts, prior, model, fixed, t0, observe, noise: as :func:`simulate_training_set`.
            simulator, dt, seed_compartment: as :func:`simulate_training_set`; e.g.
                ``simulator="exact"`` trains on stochastic epidemics (fizzled outbreaks
                included) instead of ODE curves.
            n_train: training curves; ``n_val``: validation curves (early stopping).
            hidden: hidden layer sizes; ``activation``: their activation (a name).
            epochs: maximum epochs; ``batch_size`` (at most ``n_train``),
                ``learning_rate``, ``patience``: as :func:`epinn.fit` /
                :class:`epinn.EarlyStopping`.
            verbose: ``1`` shows a progress bar.

        Returns:
            The trained :class:`NeuralEstimator`.

        Raises:
            ValueError: a bad value of any argument (as :func:`simulate_training_set` and
                :func:`epinn.fit`), checked before anything is simulated or compiled; a
                prior whose simulations are not finite.
            TypeError: an argument of the wrong kind, e.g. a ``key`` that is not one
                ``jax.random`` key or a ``learning_rate`` given as a string.
            NonFiniteLossError: the training loss or the trained parameters became NaN or
                infinite.
        """
        return cls(**_train(
            key, ts, prior=prior, model=model, fixed=fixed, t0=t0, observe=observe,
            noise=noise, simulator=simulator, dt=dt, seed_compartment=seed_compartment,
            n_train=n_train, n_val=n_val, hidden=hidden, activation=activation,
            epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            patience=patience, verbose=verbose,
        ))

    # ---- prediction ------------------------------------------------------------------

    def predict(
        self,
        curves: ArrayLike,
        population: ArrayLike | None = None,
        *,
        level: float = 0.9,
        check: bool = True,
    ) -> dict[str, dict[str, np.ndarray]]:
        r"""Estimates and ``level`` intervals for each target, for one or many curves.

        Args:
            curves: observed counts on the estimator's grid, ``(T,)`` or ``(n, T)``.
            population: :math:`N`, a number or ``(n,)``; default the prior's ``N`` when
                that is fixed.
            level: interval probability (default 90%).
            check: warn (:class:`OutOfPriorWarning`) for curves outside the training range.

        Returns:
            ``{name: {"mean", "lo", "hi", "log_mean", "log_sd"}}`` for every name in
            ``targets`` (``beta``, ``gamma``, ``R0``, ...); each value has shape ``(n,)``
            (``n = 1`` for a single curve). ``"mean"`` is :math:`\exp` of the posterior
            mean of the log (the log-normal median).

        Raises:
            ValueError: ``curves`` of the wrong length, with NaN/inf or negative counts;
                ``population`` not positive, of the wrong shape or below a curve's peak;
                ``level`` outside ``(0, 1)``.
            TypeError: ``curves``, ``population`` or ``level`` not real numbers, or
                ``check`` not a bool.
        """
        _z(level)
        check = _check_flag(check, "check")
        curves, population = _check_curves(self, curves, population, "curves")
        mu, sd = _log_posterior(self, curves, population)
        if check:
            _warn(_outside(self, curves, population, mu), stacklevel=2)
        return _summarise(self.targets, mu, sd, level)

    # ---- one outbreak ----------------------------------------------------------------

    def estimate(
        self,
        ts: ArrayLike,
        counts: ArrayLike,
        population: float | None = None,
        *,
        level: float = 0.9,
    ) -> FitResult:
        r"""Estimate the parameters of one observed outbreak.

        Also solves the model once at the estimate (``fitted``, ``trajectory`` and
        ``loss``, the mean squared residual of the fitted curve, for comparison with
        :func:`~epinn.fit_parameters`; nothing is optimised, so ``converged`` is always
        ``True`` and ``loss_history`` empty), and checks the misfit: besides the checks of
        :meth:`predict`, it warns when the Pearson statistic

        .. math:: X^2 = \sum_{i=1}^T \frac{(c_i - f_i)^2}{f_i + \nu_{max}^2 f_i^2 + 1}

        of the data :math:`c` around the fitted curve :math:`f`, with the prior's largest
        noise level :math:`\nu_{max}`, exceeds :math:`4T`. Under the model :math:`X^2` is
        roughly :math:`\chi^2_T` or smaller (mean :math:`\le T`); for the estimator of
        :func:`epinn.examples.boarding_school.train_estimator`, 4000 held-out simulations
        gave at most :math:`2.0T` (99th percentile :math:`1.1T`), while curves no SIR
        outbreak produces gave :math:`19T` (flat), :math:`40T` (two peaks) and :math:`4.2T`
        (a step). A
        misshapen curve can still pass; look at ``fitted`` against the data. The fitted
        curve is the model's ODE at the estimate, also for an estimator trained on
        stochastic simulations (whose small outbreaks scatter around the ODE more than the
        observation noise alone: the check is then a looser guide).

        Args:
            ts: observation times; must equal the estimator's ``ts``.
            counts: observed counts at ``ts``.
            population: :math:`N` (default: the prior's, when fixed).
            level: interval probability (default 90%).

        Returns:
            A :class:`~epinn.FitResult` with ``method="neural_estimator"``, ``params``
            (every model parameter: estimated, fixed by the prior or by ``fixed``; ``N``,
            ``reporting``), ``y0``, ``R0`` (from the :math:`\log R_0` head), ``intervals``
            and ``stderr`` (delta method, :math:`x\,\sigma_{\log x}`) for every target,
            and ``extras`` with the log-scale means and standard deviations, ``beta /
            gamma`` (when the model has both), ``R0_at_estimate`` (the next-generation
            :math:`R_0` at the point estimates, which agrees with the head's ``R0`` up to
            the network's approximation error) and the out-of-prior reasons.

        Raises:
            ValueError: ``ts`` not the estimator's grid, ``counts`` of the wrong length or
                with NaN/negative values, a bad ``population`` or ``level``.
            TypeError: ``ts``, ``counts``, ``population`` or ``level`` not real numbers.
        """
        return _estimate(self, ts, counts, population, level, stacklevel=2)

    # ---- held-out evaluation ---------------------------------------------------------

    def evaluate(self, key: jax.Array, n: int = 2000, *, level: float = 0.9,
                 simulator: str | None = None, dt: float | None = None) -> dict[str, Any]:
        r"""Accuracy and interval coverage on ``n`` fresh simulations from the prior.

        The held-out curves come from the estimator's own simulator, or from ``simulator``
        (e.g. ``"exact"``: how an ODE-trained estimator fares on stochastic outbreaks).

        For each target :math:`\theta`: relative errors :math:`|\hat\theta - \theta| /
        \theta` (median and mean) and the coverage, the fraction of the ``level`` intervals
        that contain the true value (close to ``level`` when the uncertainty is
        calibrated).

        Args:
            key: PRNG key for the held-out set (use one not used in training).
            n: number of held-out curves.
            level: interval probability.
            simulator: the held-out simulator (default the estimator's ``simulator``).
            dt: its step for ``"tau_leap"`` / ``"chain_binomial"`` (default the
                estimator's when the simulator is its own, else as
                :func:`simulate_training_set`).

        Returns:
            A dict with ``"n"``, ``"level"``, ``"simulator"``; ``"median_relative_error"``,
            ``"mean_relative_error"`` and ``"coverage"``, each ``{name: float}``;
            ``"truth"``, ``{name: (n,) array}``; and ``"estimates"``, the dict of
            :meth:`predict`.

        Raises:
            ValueError: bad ``n`` or ``level`` (checked before anything is simulated).
            TypeError: a ``key`` that is not one ``jax.random`` key, or ``n`` or ``level``
                of the wrong kind.
        """
        return _evaluate(self, key, n, level, simulator, dt)

    # ---- persistence -----------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """JSON-serialisable configuration (everything except the arrays)."""
        return _config(self)

    def save(self, path: str | Path) -> Path:
        """Save with :func:`epinn.save_checkpoint`: arrays as msgpack at ``path``, the
        :meth:`config`, a SHA-256 digest of the arrays and the training history in the JSON
        sidecar ``path + ".json"`` (no pickle).

        Returns:
            The checkpoint path.

        Raises:
            TypeError: ``path`` is not a ``str`` or path-like.
            ValueError: ``path`` is a directory or its folder does not exist.
            OSError: the file cannot be written (the message names ``path``).
        """
        return _save(self, path)

    @classmethod
    def load(cls, path: str | Path, *, model: CompartmentalModel | None = None
             ) -> NeuralEstimator:
        """Load an estimator written by :meth:`save`.

        The arrays are checked against the SHA-256 digest in the sidecar (written by
        :meth:`save`), so a damaged file is refused rather than loaded with altered weights.
        A built-in model is restored by name; a model of your own (its rate functions are
        code, not data) must be passed as ``model``, and must match the saved definition
        (name, compartments, parameters and flows).

        Args:
            path: the checkpoint written by :meth:`save`.
            model: the model the estimator was trained on, when it is not a built-in.

        Raises:
            TypeError: ``path`` is not a ``str`` or path-like.
            FileNotFoundError: no checkpoint or sidecar at ``path``.
            ValueError: ``path`` is a directory, the files are not a saved
                :class:`NeuralEstimator`, or they are damaged (unreadable JSON or msgpack,
                missing or malformed settings, arrays that do not match their digest); a
                custom model not passed, or a ``model`` that differs from the saved one.
        """
        return _load(cls, path, model)
