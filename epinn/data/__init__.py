"""Data preparation: splits, feature scalers and minibatch indices.

Everything here is a small pure function or an immutable PyTree, so it composes with
``jax.jit`` and ``jax.vmap``:

* :func:`train_val_test_split` -- shuffled (by a key) or chronological splits;
* :class:`Standardizer` and :class:`MinMaxScaler` -- feature scalers fitted on the training
  split and applied to every split (``fit`` / ``transform`` / ``inverse_transform``);
* :func:`batch_indices` and :func:`minibatches` -- a fresh permutation of the sample indices
  for each epoch, cut into minibatches (what :func:`epinn.fit` uses inside its jitted epoch).

**Layout.** One concept per private module, everything public re-exported here:
``_splits`` (:func:`train_val_test_split`), ``_scalers`` (:class:`Standardizer`,
:class:`MinMaxScaler`), ``_batches`` (:func:`batch_indices`, :func:`minibatches`) and
``_series`` (:func:`sliding_windows`, :func:`chronological_split`, :func:`log_transform`,
:func:`ratio_transform` and their inverses, :class:`LogRatioScaler`), with the helpers they
share (the number and fraction checks, split sizes, the scale of a constant feature) below
them in ``_common``.
"""

# The implementation modules are private; the public API is stated once, here.
from ._batches import batch_indices as batch_indices
from ._batches import minibatches as minibatches
from ._scalers import MinMaxScaler as MinMaxScaler
from ._scalers import Standardizer as Standardizer
from ._series import LogRatioScaler as LogRatioScaler
from ._series import chronological_split as chronological_split
from ._series import inverse_log_transform as inverse_log_transform
from ._series import inverse_ratio_transform as inverse_ratio_transform
from ._series import log_transform as log_transform
from ._series import ratio_transform as ratio_transform
from ._series import sliding_windows as sliding_windows
from ._splits import train_val_test_split as train_val_test_split

__all__ = [
    "MinMaxScaler",
    "Standardizer",
    "batch_indices",
    "minibatches",
    "train_val_test_split",
    # time series (sliding windows, chronological splits, count transforms)
    "LogRatioScaler",
    "chronological_split",
    "inverse_log_transform",
    "inverse_ratio_transform",
    "log_transform",
    "ratio_transform",
    "sliding_windows",
]
