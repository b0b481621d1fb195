"""The machine a benchmark ran on: what it is, its measured memory bandwidth, and the speeds
measured on it (kept so that a model not on disk can show what a synthetic run found).

The bandwidth is measured once per machine by a copy of a large array on the device MLX
uses (`engine/bench.py`), in an engine process, and kept in the cache folder; on Apple
silicon the chip's published figure is shown beside it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from mixtui import __version__
from mixtui.core.errors import MixtuiError
from mixtui.core.files import atomic_write_text

if TYPE_CHECKING:  # only its type: the caller starts it
    from mixtui.engine.client import EngineProcess

# Published memory bandwidth of Apple's chips, GB/s (Apple's specifications; the M3 Max and
# M4 Max with fewer GPU cores have less: 300 and 410).
APPLE_BANDWIDTH_GBPS: dict[str, float] = {
    "M1": 68, "M1 Pro": 200, "M1 Max": 400, "M1 Ultra": 800,
    "M2": 100, "M2 Pro": 200, "M2 Max": 400, "M2 Ultra": 800,
    "M3": 100, "M3 Pro": 150, "M3 Max": 400, "M3 Ultra": 800,
    "M4": 120, "M4 Pro": 273, "M4 Max": 546,
}


@dataclass(frozen=True)
class Machine:
    """Who measured: the report's header."""

    system: str  # e.g. "Linux x86_64" or "macOS 15.1 arm64"
    cpu: str
    cores: int
    memory_bytes: int
    backend: str  # "MLX on the GPU (Metal)", "MLX on the CPU", ...
    versions: dict[str, str]
    bandwidth_gbps: float | None  # the probe's figure
    bandwidth_device: str = ""
    chip: str | None = None  # Apple silicon: e.g. "M2 Max"
    published_gbps: float | None = None  # the chip's published bandwidth

    @property
    def summary(self) -> str:
        memory = f"{self.memory_bytes / 2**30:.0f} GB"
        text = f"{self.system}, {self.cpu}, {self.cores} cores, {memory}; {self.backend}"
        if self.bandwidth_gbps is not None:
            text += f"; bandwidth {self.bandwidth_gbps:.1f} GB/s measured"
            if self.published_gbps is not None:
                text += f" ({self.published_gbps:.0f} GB/s published for the {self.chip})"
        return text


def _cpu_name() -> str:
    if sys.platform == "darwin":
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"],
                                 capture_output=True, text=True, timeout=2)
            if out.stdout.strip():
                return out.stdout.strip()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def apple_chip(cpu: str) -> str | None:
    """"Apple M2 Max" -> "M2 Max"; None for any other CPU."""
    match = re.search(r"Apple (M\d+(?: (?:Pro|Max|Ultra))?)", cpu)
    return match.group(1) if match else None


def published_bandwidth() -> tuple[str, float] | None:
    """(chip, GB/s): Apple's published memory bandwidth for this machine's chip, if known."""
    chip = apple_chip(_cpu_name())
    gbps = APPLE_BANDWIDTH_GBPS.get(chip) if chip else None
    return (chip, gbps) if chip and gbps else None


def _version(package: str) -> str:
    from importlib import metadata  # deferred: it reads every installed package's metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def _backend() -> str:
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "MLX on the GPU (Metal)"
    if _version("mlx-cuda-13") != "absent" or _version("mlx-cuda") != "absent":
        return "MLX on the GPU (CUDA)"
    return "MLX on the CPU"


def _memory() -> int:
    import psutil  # deferred: only a report needs it

    return int(psutil.virtual_memory().total)


@functools.cache  # the model bar asks for every entry: read the machine's facts once
def machine_key() -> str:
    """What identifies this machine for cached figures: host, CPU, backend and MLX."""
    return f"{platform.node()}|{platform.machine()}|{_cpu_name()}|{_backend()}|" \
           f"mlx {_version('mlx')}"


def describe_machine(probe: dict[str, Any] | None) -> Machine:
    cpu = _cpu_name()
    chip = apple_chip(cpu)
    system = (f"macOS {platform.mac_ver()[0]} {platform.machine()}" if sys.platform == "darwin"
              else f"{platform.system()} {platform.machine()}")
    versions = {"mixtui": __version__, "mlx": _version("mlx"), "mlx-lm": _version("mlx-lm"),
                "python": platform.python_version()}
    return Machine(system, cpu, os.cpu_count() or 1, _memory(), _backend(), versions,
                   probe.get("gbps") if probe else None,
                   probe.get("device", "") if probe else "", chip,
                   APPLE_BANDWIDTH_GBPS.get(chip) if chip else None)


# -- what is kept between runs --------------------------------------------------------------------
def bench_dir() -> Path:
    override = os.environ.get("MIXTUI_CONFIG_DIR")  # tests keep it out of the user's cache
    if override:
        return Path(override).expanduser() / "bench"
    return Path(platformdirs.user_cache_dir("mixtui", appauthor=False)) / "bench"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent or damaged: measured again, nothing lost
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, Any]) -> None:
    # a cache: a failure to write it costs a measurement next time, nothing more
    with contextlib.suppress(OSError, MixtuiError):
        atomic_write_text(path, json.dumps(data, indent=1))


def probe_bandwidth(remeasure: bool = False,
                    engine: Callable[[], EngineProcess] | None = None) -> dict[str, Any] | None:
    """This machine's measured bandwidth ({"gbps", "device", "mib", "measured_at"}): the
    cached figure, or measured now in an engine from `engine()`; None if it cannot be."""
    path = bench_dir() / "probe.json"
    cached = _read(path)
    key = machine_key()
    if not remeasure and isinstance(cached.get(key), dict) and cached[key].get("gbps"):
        return dict(cached[key])
    if engine is None:
        return None
    from mixtui.engine.messages import Failed, Probe, ProbeMeasured  # the engine's words

    process = engine()
    process.send(Probe(1))
    for event in process.events(timeout=120):
        if isinstance(event, ProbeMeasured):
            figure = {"gbps": event.gbps, "device": event.device, "mib": event.mib,
                      "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            cached[key] = figure
            _write(path, cached)
            return figure
        if isinstance(event, Failed):
            return None
    return None


def record_speeds(rows: list[dict[str, Any]]) -> None:
    """Keep each row's decode speed for this machine, a synthetic run's apart from a real
    one's (the last measurement of each kind wins)."""
    path = bench_dir() / "speeds.json"
    data = _read(path)
    mine = data.setdefault(machine_key(), {})
    for row in rows:
        kinds = mine.get(row["model"])
        kinds = kinds if isinstance(kinds, dict) else {}
        kinds["synthetic" if row.get("synthetic") else "real"] = row
        mine[row["model"]] = kinds
    _write(path, data)


Speeds = dict[str, Any]  # this machine's kept speeds, by model (see speeds_here)


def speeds_here() -> Speeds:
    """Every speed kept for this machine, read once: a caller asking about many models
    (the models list, the model bar) passes it to `measured_speed` / `speed_note`."""
    mine = _read(bench_dir() / "speeds.json").get(machine_key())
    return mine if isinstance(mine, dict) else {}


def measured_speed(model: str, synthetic: bool | None = None,
                   speeds: Speeds | None = None) -> dict[str, Any] | None:
    """The last decode speed measured here for `model` ({"decode_tps", "synthetic",
    "extrapolated", "layers_run", "layers_total", "measured_at"}): of a synthetic run, of a
    real one, or (None) the newer of the two; None if there is none. `speeds`: what
    `speeds_here` read (default: read now)."""
    kinds = (speeds_here() if speeds is None else speeds).get(model)
    if not isinstance(kinds, dict):
        return None
    wanted = ("synthetic",) if synthetic else ("real",) if synthetic is False \
        else ("synthetic", "real")
    found = [kinds[k] for k in wanted if isinstance(kinds.get(k), dict)
             and kinds[k].get("decode_tps")]
    return max(found, key=lambda r: str(r.get("measured_at", ""))) if found else None


def speed_note(model: str, synthetic_only: bool = False, speeds: Speeds | None = None) -> str:
    """"≈ 23 tok/s here, synthetic" for a model measured on this machine; "" otherwise
    (with `synthetic_only`: only what a synthetic run measured)."""
    found = measured_speed(model, True if synthetic_only else None, speeds)
    if found is None:
        return ""
    tps = float(found["decode_tps"])
    figure = f"{tps:.0f}" if tps >= 10 else f"{tps:.1f}"
    how = "synthetic" if found.get("synthetic") else "measured"
    return f"≈ {figure} tok/s here, {how}"
