"""numpy and psutil, imported when first used rather than when a module is imported.

The UI process draws its first frame before anything needs numpy (about 0.3 s to import on
a small machine): routing arrives only once a model answers. Modules of the UI process that
work on routing take `np` from here:

    if TYPE_CHECKING:
        import numpy as np
    else:
        from mixtui.core.lazy import np

and use it as usual; the first attribute looked up imports numpy, and each attribute is
kept on the stand-in, so later look-ups cost what a module's do.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands in for a module until one of its attributes is needed."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        # deferred: the point of this class (see the module docstring)
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)  # found directly next time, without __getattr__
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


np = LazyModule("numpy")
psutil = LazyModule("psutil")  # the memory figures: read after the first frame
