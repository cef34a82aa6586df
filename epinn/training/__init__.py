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

**Layout.** One concept per private module, everything public re-exported here:
``_optimizers`` (:data:`OPTIMIZERS`, :func:`get_optimizer`), ``_metrics`` (:data:`METRICS`,
:func:`get_metric`, :func:`rmse`, :func:`r2_score`, :func:`accuracy`, and the resolution of
``loss`` and ``metrics``), ``_history`` (:class:`History`, :class:`EarlyStopping`),
``_errors`` (:class:`NonFiniteLossError`, :class:`LossDivergenceWarning`,
:data:`DIVERGENCE_FACTOR` and the per-epoch checks), ``_inputs`` (model adapters and input
checks), ``_epoch`` (the jitted epoch), ``_fit`` (:func:`fit`), ``_predict``
(:func:`predict`, :func:`evaluate`) and ``_checkpoint`` (:class:`Checkpoint`,
:func:`save_checkpoint`, :func:`load_checkpoint`).
"""

# The implementation modules are private; the public API is stated once, here.
from ._checkpoint import Checkpoint as Checkpoint
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._errors import DIVERGENCE_FACTOR as DIVERGENCE_FACTOR
from ._errors import LossDivergenceWarning as LossDivergenceWarning
from ._errors import NonFiniteLossError as NonFiniteLossError
from ._fit import fit as fit
from ._history import EarlyStopping as EarlyStopping
from ._history import History as History
from ._metrics import METRICS as METRICS
from ._metrics import accuracy as accuracy
from ._metrics import get_metric as get_metric
from ._metrics import r2_score as r2_score
from ._metrics import rmse as rmse
from ._optimizers import OPTIMIZERS as OPTIMIZERS
from ._optimizers import get_optimizer as get_optimizer
from ._predict import evaluate as evaluate
from ._predict import predict as predict

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
