r"""Training: optimizers by name, metrics, ``fit``, early stopping, history, checkpoints.

:func:`fit` trains a Flax Linen module (or any ``apply(params, x)`` function) by
minimising a loss with an :mod:`optax` optimizer:

.. math::

    \theta \leftarrow \theta - \eta\, \text{update}\Big(\nabla_\theta \big[
    \tfrac{1}{|B|}\textstyle\sum_{i \in B} \ell(f_\theta(x_i), y_i) + R(\theta)\big]\Big)

over minibatches :math:`B` (the whole training set for ``batch_size=None``, one sample for
``batch_size=1``), reshuffled every epoch. One epoch is one jit-compiled function: a
``lax.scan`` over the minibatches followed by the epoch's evaluation, compiled once before
the first epoch and called again for every epoch, with one host sync per epoch (for the
progress bar, the non-finite checks and early stopping).

No silent non-finite results: after every epoch :func:`fit` checks the loss, the
parameters and every recorded metric, and raises :class:`NonFiniteLossError` naming the
epoch when any is NaN or infinite. A loss that grows beyond :data:`DIVERGENCE_FACTOR`
times its first epoch's value, while still finite, gives a :class:`LossDivergenceWarning`.

The implementation lives in the private ``_fit`` (being split into one module per concept).
"""

# The implementation modules are private; the public API is stated once, here.
from ._fit import DIVERGENCE_FACTOR as DIVERGENCE_FACTOR
from ._fit import METRICS as METRICS
from ._fit import OPTIMIZERS as OPTIMIZERS
from ._fit import Checkpoint as Checkpoint
from ._fit import EarlyStopping as EarlyStopping
from ._fit import History as History
from ._fit import LossDivergenceWarning as LossDivergenceWarning
from ._fit import NonFiniteLossError as NonFiniteLossError
from ._fit import accuracy as accuracy
from ._fit import evaluate as evaluate
from ._fit import fit as fit
from ._fit import get_metric as get_metric
from ._fit import get_optimizer as get_optimizer
from ._fit import load_checkpoint as load_checkpoint
from ._fit import predict as predict
from ._fit import r2_score as r2_score
from ._fit import rmse as rmse
from ._fit import save_checkpoint as save_checkpoint

__all__ = [
    "METRICS",
    "OPTIMIZERS",
    "Checkpoint",
    "DIVERGENCE_FACTOR",
    "EarlyStopping",
    "History",
    "LossDivergenceWarning",
    "NonFiniteLossError",
    "accuracy",
    "evaluate",
    "fit",
    "get_metric",
    "get_optimizer",
    "load_checkpoint",
    "predict",
    "r2_score",
    "rmse",
    "save_checkpoint",
]
