"""Which CBLAS library MLX's CPU backend multiplies matrices with, on Linux.

MLX's Linux CPU wheel carries a reference BLAS. Its `cblas_sgemm` is several times slower
than an optimised one for the shapes a language model runs (a 160-token nano prompt: 211 ms
against 65 ms with OpenBLAS on the development machine), and it makes attention cost more
relative to the expert layers than on any real deployment. MLX resolves `cblas_sgemm` when
it is loaded, so a system BLIS or OpenBLAS named in `LD_PRELOAD` takes its place. The engine
process is started that way when such a library is installed (`apt install
libopenblas0-pthread` or `libblis4-pthread`).

`MIXTUI_BLAS` chooses: unset or `auto` (the first library found below), `bundled` (MLX's own),
or the path of a library. On macOS MLX uses Accelerate and nothing here applies.
This module imports neither mlx nor textual: the UI process calls it before spawning.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

# Optimised libraries with a CBLAS interface, best first. BLIS is fastest here for the
# one-row products that MLX's CPU gather_mm (the expert layers) is made of.
CANDIDATES = tuple(
    f"/usr/lib/{arch}-linux-gnu/{name}"
    for name in ("blis-pthread/libblis.so.4", "libblis.so.4",
                 "openblas-pthread/libopenblas.so.0", "libopenblas.so.0")
    for arch in ("x86_64", "aarch64")
) + ("/usr/lib64/libblis.so.4", "/usr/lib64/libopenblas.so.0")


def _exports_sgemm(path: str) -> bool:
    if not Path(path).is_file():
        return False
    try:
        return hasattr(ctypes.CDLL(path), "cblas_sgemm")
    except OSError:
        return False


@cache
def fast_blas() -> str | None:
    """The library to preload into a process that runs MLX on the CPU, or None."""
    if sys.platform != "linux":
        return None
    choice = os.environ.get("MIXTUI_BLAS", "auto").strip()
    if choice == "bundled":
        return None
    if choice not in ("", "auto"):
        return choice if _exports_sgemm(choice) else None
    return next((path for path in CANDIDATES if _exports_sgemm(path)), None)


def preloaded() -> str | None:
    """The optimised BLAS this process was started with, or None (MLX's bundled one)."""
    for path in os.environ.get("LD_PRELOAD", "").split(":"):
        if path and ("blis" in path or "openblas" in path or path == fast_blas()):
            return path
    return None


def with_preload(env: dict[str, str]) -> dict[str, str]:
    """`env` with the fast BLAS (if any) put first in LD_PRELOAD."""
    library = fast_blas()
    if library is None:
        return dict(env)
    others = [p for p in env.get("LD_PRELOAD", "").split(":") if p and p != library]
    return dict(env) | {"LD_PRELOAD": ":".join([library, *others])}


@contextmanager
def preload_for_children() -> Iterator[None]:
    """While inside, processes started from here (e.g. multiprocessing spawn) preload it."""
    saved = os.environ.get("LD_PRELOAD")
    wanted = with_preload(dict(os.environ)).get("LD_PRELOAD")
    if wanted is not None:
        os.environ["LD_PRELOAD"] = wanted
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = saved
