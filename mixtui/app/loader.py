"""The loader policy: which model a name means, whether it can be loaded here, and starting it.

One path for the TUI and `mixtui generate`: resolve a key, Hub repo id or folder
(`registry.local.resolve`) → preflight the folder (`registry.local.require_local`) → the
memory fit (`planner.plan`, with what the engine about to be ended gives back added to the
budget) → a download offer (a Hub model not on disk, online, that fits) → the engine (an
`EngineProcess` sent `Load`). `decide` returns a typed outcome; what a front end does with it
(a notice, a download screen, exit code 2) is the front end's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mixtui.core.errors import MixtuiError, ModelNotLocal, Remedy, UnknownFamily, literal
from mixtui.engine.messages import Load
from mixtui.families import moe_model_types
from mixtui.planner import Fit, memory_budget, plan
from mixtui.registry.local import require_local, resolve
from mixtui.registry.spec import ModelSpec

if TYPE_CHECKING:  # the engine's process machinery loads with the first engine
    from mixtui.engine.client import EngineProcess


@dataclass(frozen=True)
class Unavailable:
    """The name means no usable model here: unknown, not on disk (and not offered), broken."""

    name: str
    error: MixtuiError
    spec: ModelSpec | None = None  # None when the name itself did not resolve


@dataclass(frozen=True)
class Refused:
    """The model does not fit the memory budget (and the policy was not told to force it)."""

    spec: ModelSpec
    fit: Fit


@dataclass(frozen=True)
class OfferDownload:
    """A Hub model that is not on disk, can be fetched now, and would fit."""

    spec: ModelSpec
    fit: Fit
    error: ModelNotLocal  # what is missing, for a front end that does not offer downloads


@dataclass(frozen=True)
class Start:
    """Load it: the model's folder, and its fit (tight or forced ones deserve a warning)."""

    spec: ModelSpec
    where: Path
    fit: Fit

    @property
    def forced(self) -> bool:
        return self.fit.verdict == "does-not-fit"

    @property
    def warn(self) -> bool:
        """Tight, or loaded although it does not fit: say so once, then load."""
        return self.fit.verdict != "fits"

    def load(self, max_kv_size: int, experts_per_token: int | None = None) -> Load:
        return Load(str(self.where), self.spec.key, max_kv_size, experts_per_token)


Outcome = Unavailable | Refused | OfferDownload | Start


NO_ROUTING = Remedy("no_routing", "--no-routing")  # each front end names its own flag


def unknown_family(spec: ModelSpec) -> UnknownFamily:
    """The refusal of a MoE model whose `model_type` has no family in mixtui."""
    model_type = spec.geometry.model_type
    return UnknownFamily(
        f"{literal(spec.name)} is a mixture-of-experts model of type {literal(model_type)}, "
        "which mixtui has no family for, so it cannot show its routing; run it without "
        "routing with {no_routing}, or use a model of a family docs/families.md lists.",
        facts={"model": spec.key, "model_type": model_type,
               "families": list(moe_model_types())},
        remedies=(NO_ROUTING,))


def can_fetch(spec: ModelSpec) -> bool:
    """A Hub model, and the Hub may be asked (HF_HUB_OFFLINE is not set)."""
    from huggingface_hub import constants  # deferred: huggingface_hub takes ~0.3 s to import

    return spec.repo is not None and not constants.HF_HUB_OFFLINE


def decide(name: str | ModelSpec, *, context: int, force: bool = False,
           registry: dict[str, ModelSpec] | None = None, offer_download: bool = True,
           held_bytes: int = 0,
           check: Callable[[ModelSpec], None] | None = None,
           without_routing: bool = False) -> Outcome:
    """What loading `name` comes to; nothing is started or fetched.

    `held_bytes`: memory the caller's current engine holds and gives back before the load
    (added to the budget); `check`: the caller's own checks of the spec (e.g. the CLI's
    arguments), run after it resolves; what it raises propagates; `without_routing`: the
    user asked to run a MoE model whose family mixtui does not know, without its routing.
    """
    label = name if isinstance(name, str) else name.key
    try:
        spec = name if isinstance(name, ModelSpec) else resolve(name, registry)
    except MixtuiError as exc:
        return Unavailable(label, exc)
    if check is not None:
        check(spec)
    if spec.geometry.is_moe and spec.family is None and not without_routing:
        return Unavailable(label, unknown_family(spec), spec)
    try:
        where = require_local(spec)
    except ModelNotLocal as exc:
        if not (offer_download and can_fetch(spec)):
            return Unavailable(label, exc, spec)
        fit = plan(spec, context=context)  # before fetching gigabytes
        if fit.verdict == "does-not-fit" and not force:
            return Refused(spec, fit)
        return OfferDownload(spec, fit, exc)
    except MixtuiError as exc:
        return Unavailable(label, exc, spec)
    budget = memory_budget()
    if held_bytes:
        budget = replace(budget, bytes=budget.bytes + held_bytes)
    fit = plan(spec, context=context, budget=budget, model_dir=where)
    if fit.verdict == "does-not-fit" and not force:
        return Refused(spec, fit)
    return Start(spec, where, fit)


def is_here(name: str, registry: dict[str, ModelSpec] | None = None) -> bool:
    """Whether `name` needs no download (a name that is wrong otherwise counts as here: the
    load says what is wrong with it)."""
    try:
        require_local(resolve(name, registry))
    except ModelNotLocal:
        return False
    except MixtuiError:
        return True
    return True


def launch(load: Load, log_path: Path | None = None) -> EngineProcess:
    """A new engine process, told to load the model (events follow on `events()`)."""
    from mixtui.engine.client import EngineProcess  # deferred: multiprocessing, at the first engine

    engine = EngineProcess(log_path)
    engine.send(load)
    return engine
