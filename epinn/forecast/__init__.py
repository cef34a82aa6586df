r"""Forecast evaluation: rolling origins, error per horizon step, baselines, uncertainty.

A *forecaster* is any function ``f(inputs) -> predictions`` that maps input windows
``(windows, input_len, features)`` (as made by :func:`epinn.data.sliding_windows`) to
forecasts ``(windows, horizon)`` -- a trained :class:`epinn.RNNForecaster` wrapped with its
scaling, or one of the baselines here:

* :func:`persistence_forecast` -- the last value, repeated;
* :func:`linear_trend_forecast` -- a least-squares line through the last values;
* :func:`seasonal_naive_forecast` -- the value one period earlier;
* :func:`projection_forecast` -- any fitted model projected forward (a fit-then-predict
  callable per window), and :func:`sir_projection_forecast`, the SIR least-squares fit of
  :func:`epinn.estimation.fit_parameters` projected forward.

:func:`rolling_origin_evaluation` runs forecasters from every origin of one or more series
and reports MAE, RMSE and MAPE per horizon step (:func:`forecast_errors`).

Uncertainty: a quantile head trained with :func:`pinball_loss`, or an ensemble over
seeds (:class:`SeedEnsemble`, members vmapped in one module and trained in one
:func:`epinn.fit` with :func:`ensemble_loss`); :func:`interval_coverage` gives the
empirical coverage of an interval, e.g. the 80% interval between the 10% and 90%
quantiles.

**Layout.** One concept per private module, everything public re-exported here:
``_errors`` (:func:`forecast_errors`), ``_baselines`` (:func:`persistence_forecast`,
:func:`linear_trend_forecast`, :func:`seasonal_naive_forecast`,
:func:`projection_forecast`, :func:`sir_projection_forecast`), ``_rolling``
(:class:`RollingOriginResult`, :func:`rolling_origin_evaluation`), ``_uncertainty``
(:func:`pinball_loss`, :func:`interval_coverage`, :class:`SeedEnsemble`,
:func:`ensemble_loss`, :func:`ensemble_quantiles`) and, below them, ``_common`` (the
horizon check shared by the baselines and the rolling evaluation).
"""

# The implementation modules are private; the public API is stated once, here.
from ._baselines import linear_trend_forecast as linear_trend_forecast
from ._baselines import persistence_forecast as persistence_forecast
from ._baselines import projection_forecast as projection_forecast
from ._baselines import seasonal_naive_forecast as seasonal_naive_forecast
from ._baselines import sir_projection_forecast as sir_projection_forecast
from ._errors import forecast_errors as forecast_errors
from ._rolling import RollingOriginResult as RollingOriginResult
from ._rolling import rolling_origin_evaluation as rolling_origin_evaluation
from ._uncertainty import SeedEnsemble as SeedEnsemble
from ._uncertainty import ensemble_loss as ensemble_loss
from ._uncertainty import ensemble_quantiles as ensemble_quantiles
from ._uncertainty import interval_coverage as interval_coverage
from ._uncertainty import pinball_loss as pinball_loss

__all__ = [
    "RollingOriginResult",
    "SeedEnsemble",
    "ensemble_loss",
    "ensemble_quantiles",
    "forecast_errors",
    "interval_coverage",
    "linear_trend_forecast",
    "persistence_forecast",
    "pinball_loss",
    "projection_forecast",
    "rolling_origin_evaluation",
    "seasonal_naive_forecast",
    "sir_projection_forecast",
]
