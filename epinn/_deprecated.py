"""Names that moved: a module's ``__getattr__`` (PEP 562) serving each old name from its new place.

A public name is a contract, so when one moves (issue #23 moved the boarding-school recipe
to :mod:`epinn.examples`) the old name keeps working for a while: reading it emits a
:class:`DeprecationWarning` that names the new place and returns the very object found
there. The old names are not module attributes, so ``dir()``, ``__all__``, ``help()``
and the API pages list only the canonical names.

The new place is given as a dotted path and imported only when an old name is read, so
a module keeping an alias never imports the new place itself: a name may move up a floor
(docs/architecture.md) without the lower floor depending on the upper one.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Mapping
from typing import Any


def _moved_names(module: str, moved: Mapping[str, str], why: str = "") -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for names that moved elsewhere.

    Args:
        module: the name of the module keeping the old names (its ``__name__``).
        moved: ``{old name: "package.module.NEW_NAME"}``: where each old name lives now.
        why: appended to the warning, e.g. the issue that moved the names.

    Returns:
        ``__getattr__(name)``: for an old name, warns (:class:`DeprecationWarning`, naming
        the new place, attributed to the caller's line, also for
        ``from module import old``) and returns the object at the new place; any other name
        raises :class:`AttributeError` as it would without the hook.

    Examples:
        >>> import warnings
        >>> getattr_ = _moved_names("mymod", {"old_pi": "math.pi"})
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     value = getattr_("old_pi")
        >>> round(value, 5), str(caught[0].message)
        (3.14159, '`mymod.old_pi` is deprecated: use `math.pi`.')
        >>> getattr_("other")
        Traceback (most recent call last):
        AttributeError: module 'mymod' has no attribute 'other'
    """
    moved = dict(moved)
    for old, new in moved.items():
        if "." not in new:
            raise ValueError(f"the new place of {old!r} must be a dotted path; got {new!r}.")
    suffix = f" {why}" if why else ""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new = moved[name]
        # stacklevel 2: the line that read the name. warnings skips importlib's frames, so
        # `from module import name` (whose import machinery asks hasattr first) points
        # there too, and the two reads are one warning under the default filters.
        warnings.warn(f"`{module}.{name}` is deprecated: use `{new}`.{suffix}",
                      DeprecationWarning, stacklevel=2)
        home, _, attribute = new.rpartition(".")
        return getattr(importlib.import_module(home), attribute)

    return __getattr__
