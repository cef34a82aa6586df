"""epinn: neural networks for epidemic modelling in JAX.

The public API is stated once, here. Each block re-exports one module; helpers (names
starting with ``_``) stay private to their modules.
"""

from ._version import __version__ as __version__

# --- activations ---------------------------------------------------------------------
from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import elu as elu
from .activations import get_activation as get_activation
from .activations import leaky_relu as leaky_relu
from .activations import linear as linear
from .activations import relu as relu
from .activations import sigmoid as sigmoid
from .activations import smelu as smelu
from .activations import softmax as softmax
from .activations import tanh as tanh
# --- losses --------------------------------------------------------------------------
from .losses import LOSSES as LOSSES
from .losses import binary_cross_entropy as binary_cross_entropy
from .losses import categorical_cross_entropy as categorical_cross_entropy
from .losses import gaussian_nll as gaussian_nll
from .losses import get_loss as get_loss
from .losses import gradient_penalty as gradient_penalty
from .losses import l1_penalty as l1_penalty
from .losses import mae as mae
from .losses import mse as mse
# --- models --------------------------------------------------------------------------
from .models import MLP as MLP
from .models import RNNForecaster as RNNForecaster
from .models import rollout as rollout
# --- data ----------------------------------------------------------------------------
from .data import MinMaxScaler as MinMaxScaler
from .data import Standardizer as Standardizer
from .data import batch_indices as batch_indices
from .data import minibatches as minibatches
from .data import train_val_test_split as train_val_test_split
from .data import LogRatioScaler as LogRatioScaler
from .data import chronological_split as chronological_split
from .data import inverse_log_transform as inverse_log_transform
from .data import inverse_ratio_transform as inverse_ratio_transform
from .data import log_transform as log_transform
from .data import ratio_transform as ratio_transform
from .data import sliding_windows as sliding_windows
# --- training ------------------------------------------------------------------------
from .training import METRICS as METRICS
from .training import OPTIMIZERS as OPTIMIZERS
from .training import Checkpoint as Checkpoint
from .training import EarlyStopping as EarlyStopping
from .training import History as History
from .training import LossDivergenceWarning as LossDivergenceWarning
from .training import NonFiniteLossError as NonFiniteLossError
from .training import accuracy as accuracy
from .training import evaluate as evaluate
from .training import fit as fit
from .training import get_metric as get_metric
from .training import get_optimizer as get_optimizer
from .training import load_checkpoint as load_checkpoint
from .training import predict as predict
from .training import r2_score as r2_score
from .training import rmse as rmse
from .training import save_checkpoint as save_checkpoint
# --- plotting ------------------------------------------------------------------------
from .plotting import plot_decision_regions as plot_decision_regions
from .plotting import plot_epidemic_fits as plot_epidemic_fits
from .plotting import plot_parameter_intervals as plot_parameter_intervals
from .plotting import plot_time_varying_rate as plot_time_varying_rate
from .plotting import plot_learning_curves as plot_learning_curves
from .plotting import plot_predictions as plot_predictions
# --- sharding ------------------------------------------------------------------------
from .sharding import batch_sharding as batch_sharding
from .sharding import configure_cpu as configure_cpu
from .sharding import device_mesh as device_mesh
from .sharding import loop_kernel_bytes as loop_kernel_bytes
from .sharding import map_blocks as map_blocks
from .sharding import pad_batch as pad_batch
from .sharding import replicated as replicated
from .sharding import resolve_mesh as resolve_mesh
from .sharding import shard_batch as shard_batch
from .sharding import shard_map_batch as shard_map_batch
from .sharding import vmap_blocks as vmap_blocks
# --- flows (the model definition) ---------------------------------------------------
from .compartmental import Flow as Flow
from .compartmental import Model as Model
from .compartmental import flow as flow
from .compartmental import infection as infection
from .compartmental import next_generation_matrices as next_generation_matrices
from .compartmental import stratify as stratify
# --- compartmental -------------------------------------------------------------------
from .compartmental import R0 as R0
from .compartmental import SEIR as SEIR
from .compartmental import SEIRD as SEIRD
from .compartmental import SIR as SIR
from .compartmental import SIRD as SIRD
from .compartmental import SIRS as SIRS
from .compartmental import CompartmentalModel as CompartmentalModel
from .compartmental import EnsembleSummary as EnsembleSummary
from .compartmental import FinalSize as FinalSize
from .compartmental import NetworkRate as NetworkRate
from .compartmental import SIRVitalDynamics as SIRVitalDynamics
from .compartmental import Trajectory as Trajectory
from .compartmental import cumulative_cases as cumulative_cases
from .compartmental import doubling_time as doubling_time
from .compartmental import effective_reproduction_number as effective_reproduction_number
from .compartmental import ensemble_summary as ensemble_summary
from .compartmental import final_size as final_size
from .compartmental import growth_rate as growth_rate
from .compartmental import incidence as incidence
from .compartmental import peak as peak
from .compartmental import solve as solve
from .compartmental import SolverOptions as SolverOptions
from .compartmental import solve_ensemble as solve_ensemble
# --- observation ---------------------------------------------------------------------
from .observation import OBSERVABLES as OBSERVABLES
from .observation import Gaussian as Gaussian
from .observation import NegativeBinomial as NegativeBinomial
from .observation import NoiseModel as NoiseModel
from .observation import Poisson as Poisson
from .observation import observables as observables
from .observation import observe as observe
from .observation import simulate_observations as simulate_observations
# --- datasets ------------------------------------------------------------------------
from .datasets import ObservationTimes as ObservationTimes
from .datasets import OutbreakData as OutbreakData
from .datasets import interval_counts as interval_counts
from .datasets import list_datasets as list_datasets
from .datasets import load_boarding_school as load_boarding_school
from .datasets import load_bombay_plague as load_bombay_plague
from .datasets import load_dataset as load_dataset
from .datasets import load_ebola_kikwit as load_ebola_kikwit
from .datasets import load_philadelphia_1918 as load_philadelphia_1918
from .datasets import load_zika_yap as load_zika_yap
# --- results -----------------------------------------------------------------------
from .results import ConvergenceWarning as ConvergenceWarning
from .results import FitResult as FitResult
from .results import IdentifiabilityWarning as IdentifiabilityWarning
from .results import MisfitWarning as MisfitWarning
# --- estimation --------------------------------------------------------------------
from .estimation import fit_parameters as fit_parameters
from .estimation import fit_parameters_batch as fit_parameters_batch
# --- profile -------------------------------------------------------------------------
from .profile import Profile as Profile
from .profile import plot_profile as plot_profile
from .profile import profile_likelihood as profile_likelihood
# --- amortized -----------------------------------------------------------------------
from .amortized import NeuralEstimator as NeuralEstimator
from .amortized import OutOfPriorWarning as OutOfPriorWarning
from .amortized import Prior as Prior
from .amortized import SimulatedSet as SimulatedSet
from .amortized import normalize_curve as normalize_curve
from .amortized import simulate_training_set as simulate_training_set
# --- neural_beta ---------------------------------------------------------------------
from .neural_beta import fit_neural_beta as fit_neural_beta
# --- pinn ----------------------------------------------------------------------------
from .pinn import fit_pinn as fit_pinn
# --- forecast ------------------------------------------------------------------------
from .forecast import RollingOriginResult as RollingOriginResult
from .forecast import SeedEnsemble as SeedEnsemble
from .forecast import ensemble_loss as ensemble_loss
from .forecast import ensemble_quantiles as ensemble_quantiles
from .forecast import forecast_errors as forecast_errors
from .forecast import interval_coverage as interval_coverage
from .forecast import linear_trend_forecast as linear_trend_forecast
from .forecast import persistence_forecast as persistence_forecast
from .forecast import pinball_loss as pinball_loss
from .forecast import projection_forecast as projection_forecast
from .forecast import rolling_origin_evaluation as rolling_origin_evaluation
from .forecast import seasonal_naive_forecast as seasonal_naive_forecast
from .forecast import sir_projection_forecast as sir_projection_forecast
# --- bayes ---------------------------------------------------------------------------
from .bayes import MCMCResult as MCMCResult
from .bayes import SVIResult as SVIResult
from .bayes import bnn_model as bnn_model
from .bayes import credible_interval as credible_interval
from .bayes import default_priors as default_priors
from .bayes import epidemic_model as epidemic_model
from .bayes import fit_bayesian_neural_beta as fit_bayesian_neural_beta
from .bayes import fit_bnn as fit_bnn
from .bayes import fit_epidemic as fit_epidemic
from .bayes import mcmc_diagnostics as mcmc_diagnostics
from .bayes import neural_beta_model as neural_beta_model
from .bayes import posterior_predictive as posterior_predictive
from .bayes import predictive_coverage as predictive_coverage
from .bayes import prior_predictive as prior_predictive
from .bayes import run_nuts as run_nuts
from .bayes import run_svi as run_svi
# --- stochastic (a namespace: epinn.stochastic.simulate, ...) -------------------------
from . import stochastic as stochastic  # noqa: E402
# --- examples (a namespace: epinn.examples.boarding_school.PRIOR, ...; on top of all) ---
from . import examples as examples  # noqa: E402
# --- names that moved (a DeprecationWarning naming the new place) ----------------------
from ._deprecated import _moved_names  # noqa: E402

__getattr__ = _moved_names(__name__, {
    "BOARDING_SCHOOL_PRIOR": "epinn.examples.boarding_school.PRIOR",
    "train_boarding_school_estimator": "epinn.examples.boarding_school.train_estimator",
    "bayesian_boarding_school": "epinn.examples.boarding_school.bayesian_fit",
}, why="The boarding-school recipe moved to epinn.examples (issue #23).")
del _moved_names


def _public_api() -> list[str]:
    import types  # noqa: PLC0415

    names = globals()
    return sorted(n for n, v in names.items() if not n.startswith("_")
                  and not isinstance(v, types.ModuleType))


__all__ = _public_api()  # help(epinn) lists these
del _public_api
