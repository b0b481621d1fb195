"""One loaded model, generating with mlx-lm while its routing is captured. Owns MLX.

Used inside the engine process (worker.py) and directly by benchmarks and tests.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_reduce

from mixtui.core.errors import MixtuiError, Remedy, UsageError
from mixtui.core.types import DEFAULT_CONTEXT, ModelInfo, Sampling, Stats
from mixtui.engine import bench, blas, precision
from mixtui.engine.capture import RoutingCapture
from mixtui.engine.messages import (
    Bench,
    BenchMeasured,
    BenchProgress,
    Finished,
    Generate,
    Loading,
    Perplexity,
    PerplexityMeasured,
    RunFigures,
    Tokens,
)
from mixtui.engine.prompt import build_prompt
from mixtui.families import adapters, family_for, moe_model_types
from mixtui.families.geometry import Geometry
from mixtui.families.inventory import Quantization
from mixtui.registry.check import (
    ModelUnusable,
    check_model_dir,
    hub_repo_of,
    mlx_lm,
    pick_supported,
    remote_code_message,
    repair_hint,
    tokenizer_code_message,
    tokenizer_code_ref,
    unsupported_message,
)

FLUSH_INTERVAL_S = 0.05  # routing and text reach the caller at about 20 Hz


class _PrefillCancelled(Exception):
    """Raised from mlx-lm's prompt-progress callback to stop a long prompt between chunks."""


class EngineError(MixtuiError):
    """A failure inside the engine that the user can act on."""


def _device_label() -> str:
    """"gpu", or "cpu" with the BLAS it multiplies with (see engine/blas.py)."""
    device = mx.default_device()
    if device.type != mx.cpu:
        return "gpu"
    library = blas.preloaded()
    if library is None:
        return "cpu, bundled BLAS" if sys.platform == "linux" else "cpu"
    return "cpu, " + ("BLIS" if "blis" in library else "OpenBLAS" if "openblas" in library
                      else Path(library).name)


def _one_line(exc: BaseException, most: int = 200) -> str:
    """The first line of an exception's message, short enough to sit inside a sentence."""
    text = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
    text = text.strip("'\"") if isinstance(exc, KeyError) else text
    text = f"{type(exc).__name__}: {text}" if isinstance(exc, KeyError | TypeError) else text
    return text if len(text) <= most else text[:most - 1] + "…"


class _CapturedStderr:
    """Holds what libraries write to file descriptor 2 while a model loads.

    A failed load becomes one sentence (the words the libraries printed go to the detail,
    shown with --debug); a successful one replays them, so nothing is lost.
    """

    def __init__(self) -> None:
        self.text = ""
        self._file: Any = None
        self._saved = -1

    def __enter__(self) -> _CapturedStderr:
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._saved = os.dup(2)
        os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._file.seek(0)
        self.text = self._file.read().decode("utf-8", errors="replace")
        self._file.close()
        if exc_info[1] is not None and isinstance(exc_info[1], MixtuiError):
            exc_info[1].detail = self.text + exc_info[1].detail

    def replay(self) -> None:
        if self.text:
            sys.stderr.write(self.text)
            sys.stderr.flush()


def _fix_hint(model_dir: Path, replace: str) -> str:
    repo = hub_repo_of(model_dir)
    return repair_hint(repo) if repo is not None else replace


def _model_failure(model_dir: Path, exc: ValueError, detail: str) -> MixtuiError:
    message = str(exc)
    config_path = model_dir / "config.json"
    if "trust_remote_code" in message:  # mlx-lm refuses a config's custom model_file
        return ModelUnusable(remote_code_message(f"The architecture in {config_path}",
                                                 "model_file", pick_supported(mlx_lm())), detail)
    unsupported = re.match(r"Model type (\S+) not supported", message)
    if unsupported:
        return ModelUnusable(unsupported_message(config_path, unsupported.group(1), mlx_lm()),
                             detail)
    return EngineError(f"mlx-lm cannot load {model_dir} ({_one_line(exc)}); check that it is an "
                       "MLX conversion of a supported model.", detail)


def _tokenizer_failure(model_dir: Path, exc: Exception, detail: str) -> MixtuiError:
    """One sentence for a tokenizer that transformers or tokenizers would not load."""
    tok_json = model_dir / "tokenizer.json"
    if tok_json.is_file():
        fix = _fix_hint(model_dir, "replace it with the model's own tokenizer.json")
        try:
            json.loads(tok_json.read_text(encoding="utf-8"))
        except ValueError as bad:  # UnicodeDecodeError is one too
            return ModelUnusable(f"{tok_json} is not valid JSON ({_one_line(bad)}); {fix}.",
                                 detail)
        from tokenizers import Tokenizer  # deferred: only a failed load needs it

        try:
            Tokenizer.from_file(str(tok_json))
        except Exception as bad:
            return ModelUnusable(f"{tok_json} is not a tokenizer that the tokenizers library "
                                 f"can read ({_one_line(bad)}); {fix}.", detail)
    ref = tokenizer_code_ref(model_dir)
    if ref is not None or "trust_remote_code" in str(exc):
        return ModelUnusable(tokenizer_code_message(model_dir, ref or "trust_remote_code"),
                             detail)
    fix = _fix_hint(model_dir, "replace its tokenizer files with the ones from the model's "
                               "repository")
    return ModelUnusable(f"The tokenizer of {model_dir} cannot be loaded ({_one_line(exc)}); "
                         f"{fix}.", detail)


CONTEXT_SIZE = Remedy("context_size", "--max-kv-size")  # the TUI names its setting instead


def context_overflow(tokens: int, context: int, conversation: bool) -> str:
    """The sentence for a prompt that does not fit the KV cache (`max_kv_size`), a template
    with the remedy CONTEXT_SIZE."""
    holds = f"the context holds {context}" + (", the answer included" if tokens == context
                                              else "")
    if conversation:
        return (f"The conversation is {tokens} tokens but {holds}; clear the conversation, "
                "shorten your message or raise the context size ({context_size}).")
    return f"The prompt is {tokens} tokens but {holds}; shorten it or raise the context size " \
           "({context_size})."


def no_family_message(model_type: str) -> str:
    """The sentence for a MoE model whose `model_type` has no family in mixtui."""
    return (f"mixtui has no family for {model_type} models, so it can neither read nor "
            f"change their routing; use a model of type {', '.join(moe_model_types())}, or "
            "add a family for it (docs/architecture.md, \"Adding a family\").")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Session:
    """A model and tokenizer in memory, with the KV cache of the current conversation."""

    def __init__(self, model: nn.Module, tokenizer: Any, config: dict[str, Any], path: str,
                 name: str, max_kv_size: int | None = DEFAULT_CONTEXT):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        self.path = path
        self.name = name
        self.max_kv_size = max_kv_size
        self.geometry = Geometry.from_hf_config(config)
        self.family = family_for(str(config.get("model_type")))
        self.adapter = adapters.adapter_for(str(config.get("model_type")))
        self._blocks = self.adapter.blocks(model) if self.adapter else []
        self.moe_layers = tuple(i for i, _ in self._blocks)
        self.default_top_k = self.top_k
        self.capture: RoutingCapture | None = None
        if self.adapter and self._blocks:
            self.capture = RoutingCapture(self.adapter, len(self._blocks), self._blocks[0][1])
            adapters.attach(self.adapter, model, self.capture)
        self._cache: list[Any] | None = None
        self._cached_tokens: list[int] = []
        self._capture_on = True
        self.float32_activations = precision.float32_activations(model)

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str, name: str | None = None,
             max_kv_size: int | None = DEFAULT_CONTEXT,
             progress: Callable[[Loading], None] | None = None) -> Session:
        """Load with mlx-lm, evaluating the weights layer by layer so progress is real."""
        # deferred: mlx-lm (with transformers) takes about 2 s to import
        from mlx_lm.utils import load_model, load_tokenizer

        report = progress or (lambda _: None)
        model_dir = Path(path)
        if not model_dir.is_dir():
            raise UsageError(f"No such directory: {path}; check the path.")
        # The caller checked already (registry.require_local); a Load may come from anywhere.
        check_model_dir(model_dir)
        report(Loading("reading config and tokenizer", 0, 1))
        with _CapturedStderr() as log:
            try:
                model, config = load_model(model_dir, lazy=True)
            except FileNotFoundError as exc:
                raise EngineError(f"{path} is incomplete ({exc}); download the model again."
                                  ) from None
            except ValueError as exc:
                raise _model_failure(model_dir, exc, traceback.format_exc()) from None
            except (KeyError, TypeError) as exc:  # ModelArgs from a config that lacks fields
                raise EngineError(f"mlx-lm cannot build {path} from its config.json "
                                  f"({_one_line(exc)}); check that it is an MLX conversion of "
                                  "a supported model.", traceback.format_exc()) from None
            try:
                tokenizer = load_tokenizer(model_dir,
                                           eos_token_ids=config.get("eos_token_id", None))
            except Exception as exc:  # transformers or tokenizers refused the tokenizer files
                raise _tokenizer_failure(model_dir, exc, traceback.format_exc()) from None
        log.replay()  # loaded: whatever the libraries said goes where it always went
        layers = list(model.layers)
        for i, layer in enumerate(layers):
            mx.eval(layer.parameters())
            report(Loading("loading weights", i + 1, len(layers) + 1))
        mx.eval(model.parameters())
        report(Loading("loading weights", len(layers) + 1, len(layers) + 1))
        return cls(model, tokenizer, config, path, name or Path(path).name, max_kv_size)

    @classmethod
    def synthetic(cls, name: str, config: dict[str, Any], quantization: Quantization | None,
                  seed: int = 0, progress: Callable[[Loading], None] | None = None) -> Session:
        """A model of `config` with random weights in its real checkpoint's layout (see
        engine/synthetic.py), built here in memory: nothing is read. It has no tokenizer."""
        from mixtui.engine.synthetic import build_full_size  # deferred: imports mlx-lm

        report = progress or (lambda _: None)

        def built(done: int, total: int) -> None:
            report(Loading("building random weights", done, total))

        report(Loading("building random weights", 0, 1))
        model, full_config = build_full_size(config, quantization, seed=seed, progress=built)
        return cls(model, None, full_config, f"synthetic:{name}", name, None)

    # -- settings -----------------------------------------------------------------------------
    @property
    def top_k(self) -> int:
        return self.adapter.top_k(self._blocks[0][1]) if self.adapter and self._blocks else 0

    def set_experts_per_token(self, k: int | None) -> None:
        """Route each token to k experts (1..num_experts) from the next turn on."""
        if not self.adapter or not self._blocks:
            if self.geometry.is_moe:
                raise UsageError(no_family_message(self.geometry.model_type))
            raise UsageError(f"{self.name} is a dense model: it has no experts to choose.")
        k = self.default_top_k if k is None else k
        experts = self.geometry.experts
        # group-limited routing (DeepSeek, GLM) can choose only among its best groups
        most = self.family.max_experts_per_token(self.config) if self.family else experts
        if not 1 <= k <= most:
            note = self.family.experts_per_token_note(self.config) if self.family else ""
            raise UsageError(f"Experts per token must be between 1 and {most}, not {k}."
                             + (f" {note}" if note else ""),
                             code="experts-per-token", facts={"most": most, "asked": k})
        for _, block in self._blocks:
            self.adapter.set_top_k(block, k)
        # Cached keys and values were computed with the old k: start the cache afresh.
        self.reset_conversation()

    def reset_conversation(self) -> None:
        self._cache = None
        self._cached_tokens = []

    def info(self) -> ModelInfo:
        g = self.geometry
        family = self.family
        inventory = family.inventory(self.config) if family is not None else None
        weight_bytes = tree_reduce(lambda acc, x: acc + x.nbytes if isinstance(x, mx.array)
                                   else acc, self.model.parameters(), 0)
        return ModelInfo(
            name=self.name, path=self.path, model_type=g.model_type, num_layers=g.layers,
            moe_layers=self.moe_layers, num_experts=g.experts if self._blocks else 0,
            top_k=self.top_k, default_top_k=self.default_top_k,
            total_params=inventory.total() if inventory else g.total_params(),
            active_params=(inventory.active(self.top_k or None) if inventory
                           else g.active_params(self.top_k or None)),
            weight_bytes=int(weight_bytes),
            kv_bytes_per_token=(family.kv_bytes_per_token(self.config, g.dtype_bytes)
                                if family else g.kv_bytes_per_token()),
            max_kv_size=self.max_kv_size,
            chat_template=getattr(self.tokenizer, "chat_template", None) is not None,
            vocab_size=g.vocab,
            device=_device_label() + (", float32 activations" if self.float32_activations
                                      else ""),
            family=family.name if family else "", scoring=family.scoring if family else "",
            shared_experts=g.shared_experts if self._blocks else 0,
            top_k_note=family.experts_per_token_note(self.config) if family else "",
            max_top_k=(family.max_experts_per_token(self.config)
                       if family and self._blocks else 0),
        )

    # -- measurements -------------------------------------------------------------------------
    def _reporter(self, send: Callable[[BenchProgress], None], request_id: int, stage: str,
                  run: int, runs: int, k: int = 0) -> bench.Progress:
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.perf_counter()
            if now - last[0] >= 0.1 or done == total:  # a few updates a second at most
                last[0] = now
                send(BenchProgress(request_id, stage, run, runs, done, total, k))

        return report

    def _prompt_ids(self, text: str | None, n: int | None) -> list[int]:
        if text is None or self.tokenizer is None:
            return bench.random_prompt(self.geometry.vocab, n or 128)
        ids = list(self.tokenizer.encode(text))
        if not ids:
            raise UsageError("The prompt has no tokens; give some text.")
        return bench.fit_tokens(ids, n)

    def bench(self, request: Bench, send: Callable[[BenchProgress | BenchMeasured], None],
              should_stop: Callable[[], bool] = lambda: False) -> None:
        """For each value: a warm-up run (the same prompt, two tokens); then `request.runs`
        rounds of one run at every value. Sends one BenchMeasured per value."""
        ks = list(request.experts_per_token) or [None]
        prompt = self._prompt_ids(request.prompt, request.prompt_tokens)
        if self.adapter is not None and self.capture is not None:
            adapters.detach(self.adapter, self.model)  # time the blocks as mlx-lm wrote them
        # A GPU compiles each kernel on its first use: its warm-up runs the whole prompt. MLX's
        # CPU kernels are built ahead, and a long prompt there takes minutes: a short one.
        warm_prompt = prompt if mx.default_device().type == mx.gpu else prompt[:8]
        runs: dict[int, list[RunFigures]] = {}
        stopped = False
        rid = request.request_id
        try:
            for r in range(request.runs + 1):  # round 0: the warm-ups
                for k in ks:
                    self._use_k(k)
                    stage = "warm-up" if r == 0 else "run"
                    figures = bench.timed_run(
                        self.model, warm_prompt if r == 0 else prompt,
                        min(2, request.gen_tokens) if r == 0 else request.gen_tokens, should_stop,
                        self._reporter(send, rid, stage, r, request.runs, self.top_k))
                    if figures is None:
                        stopped = True
                        break
                    runs.setdefault(self.top_k, [])
                    if r > 0:
                        runs[self.top_k].append(figures)
                if stopped:
                    break
        finally:
            if self.adapter is not None and self.capture is not None:
                adapters.attach(self.adapter, self.model, self.capture)
            self.reset_conversation()
        for k in ks:
            self._use_k(k)
            send(BenchMeasured(rid, tuple(runs.get(self.top_k, ())), self.top_k,
                               cancelled=stopped))

    def _use_k(self, k: int | None) -> None:
        """Route to k experts (None: the model's own; a dense model has none to set)."""
        if self.adapter is not None and self._blocks:
            wanted = self.default_top_k if k is None else k
            if wanted != self.top_k:
                self.set_experts_per_token(wanted)

    def perplexity(self, request: Perplexity, send: Callable[[BenchProgress], None],
                   should_stop: Callable[[], bool] = lambda: False) -> PerplexityMeasured:
        """Perplexity of `request.text` in windows of the model's context (2,048 at most)."""
        if self.tokenizer is None:
            raise UsageError(f"{self.name} has random weights: its perplexity means nothing.",
                             code="perplexity-synthetic")
        self._use_k(request.experts_per_token)
        ids = list(self.tokenizer.encode(request.text, add_special_tokens=False))
        ids = ids[:request.max_tokens]
        if len(ids) < 2:
            raise UsageError("The perplexity text has fewer than two tokens; give a longer "
                             "text.", code="perplexity-text")
        context = int(self.config.get("max_position_embeddings") or 2048)
        chunk = max(2, min(context, 2048))  # no KV cache: the windows are scored whole
        bos = getattr(self.tokenizer, "bos_token_id", None)
        result = bench.perplexity(self.model, ids, chunk, bos, should_stop,
                                  self._reporter(send, request.request_id, "perplexity", 1, 1))
        self.reset_conversation()
        if result is None:
            return PerplexityMeasured(request.request_id, math.nan, 0, chunk, self.top_k)
        return PerplexityMeasured(request.request_id, result[0], result[1], chunk, self.top_k)

    # -- generation ---------------------------------------------------------------------------
    def _prepare_cache(self, tokens: list[int]) -> int:
        """Reuse the KV cache for the longest shared prefix; return how many tokens it covers."""
        # deferred: mlx-lm (with transformers) takes about 2 s to import
        from mlx_lm.models.cache import can_trim_prompt_cache, make_prompt_cache, trim_prompt_cache

        reuse = min(_common_prefix(self._cached_tokens, tokens), len(tokens) - 1)
        if self._cache is not None and reuse > 0 and can_trim_prompt_cache(self._cache):
            trim_prompt_cache(self._cache, len(self._cached_tokens) - reuse)
        else:
            self._cache = make_prompt_cache(self.model, max_kv_size=self.max_kv_size)
            reuse = 0
        self._cached_tokens = tokens[:reuse]
        return reuse

    def generate(self, request: Generate, should_stop: Callable[[], bool] = lambda: False,
                 flush_interval: float = FLUSH_INTERVAL_S) -> Iterator[Tokens | Finished]:
        """Stream Tokens events (prompt first, then generated), then one Finished."""
        # deferred: mlx-lm (with transformers) takes about 2 s to import
        from mlx_lm import stream_generate

        # deferred: mlx-lm (with transformers) takes about 2 s to import
        from mlx_lm.sample_utils import make_sampler

        if request.sampling.max_tokens < 1:
            raise UsageError(f"max_tokens must be at least 1, not {request.sampling.max_tokens}.")
        tokens, system_merged = build_prompt(self.tokenizer, request)
        if self.max_kv_size is not None and len(tokens) >= self.max_kv_size:
            # Checked before the cache is touched: the conversation's cache stays as it was.
            # (mlx-lm's rotating cache would otherwise drop the prompt's start, silently.)
            raise UsageError(context_overflow(len(tokens), self.max_kv_size,
                                              len(request.messages) > 1),
                             code="context-overflow", remedies=(CONTEXT_SIZE,),
                             facts={"tokens": len(tokens), "context": self.max_kv_size})
        cached = self._prepare_cache(tokens)
        feed = tokens[cached:]
        s: Sampling = request.sampling
        if s.seed is not None:
            mx.random.seed(s.seed)
        sampler = make_sampler(temp=s.temperature, top_p=s.top_p, min_p=s.min_p, top_k=s.top_k)
        capture = self.capture if request.capture else None
        if self.capture is not None and self.adapter is not None:
            self.capture.discard()
            if capture is not None:
                adapters.attach(self.adapter, self.model, capture)
            else:  # run the blocks exactly as mlx-lm wrote them
                adapters.detach(self.adapter, self.model)

        mx.reset_peak_memory()
        rid = request.request_id
        start = time.perf_counter()
        ttft = prompt_done = first_token = 0.0
        ids: list[int] = []
        texts: list[str] = []
        sent = 0  # generated tokens already sent
        last_flush = start
        finish = "length"

        prefilled = [0]  # prompt tokens mlx-lm has run through the model so far

        def on_prompt_progress(done: int, total: int) -> None:
            # Called by mlx-lm before the prompt and after each prefill chunk.
            prefilled[0] = done
            if done < total and should_stop():
                raise _PrefillCancelled
            if capture is not None and 0 < done < total:
                # A chunk's last-layer routing is not needed for its KV cache, so mlx-lm
                # leaves it unevaluated; schedule it with the chunk instead of holding
                # the chunk's activations until the first token.
                capture.schedule_pending()

        # The answer stops where the context is full rather than letting mlx-lm's rotating
        # cache drop the conversation's start unseen.
        limit = s.max_tokens
        if self.max_kv_size is not None:
            limit = min(limit, self.max_kv_size - len(tokens))
        responses = stream_generate(self.model, self.tokenizer, mx.array(feed),
                                    max_tokens=limit, sampler=sampler,
                                    prompt_cache=self._cache,
                                    prompt_progress_callback=on_prompt_progress)
        processed = len(feed)  # prompt tokens run through the model, for the figures
        try:
            for n, response in enumerate(responses):
                ids.append(response.token)
                texts.append(response.text)
                if n == 0:
                    ttft = time.perf_counter() - start
                    # The prompt's steps are finished once the first token exists; the step
                    # that processes that token is still in flight: leave it out.
                    yield self._prompt_event(rid, feed, capture)
                    prompt_done = first_token = time.perf_counter()
                if response.finish_reason is not None:
                    finish = response.finish_reason
                    break
                now = time.perf_counter()
                if now - last_flush >= flush_interval or (sent == 0 and n == 1):
                    # Tokens 0..n-1 have finished steps; token n's step is still running.
                    # (The first token goes out as soon as its step is done.)
                    event = self._token_event(rid, ids, texts, sent, len(ids) - 1, capture)
                    if event is not None:
                        yield event
                        sent = len(ids) - 1
                    last_flush = now
                if should_stop():
                    finish = "cancelled"
                    break
        except _PrefillCancelled:
            finish = "cancelled"
            # The figures say what was done: the chunks that ran before the stop (their
            # keys and values are dropped with the cache below), not the whole prompt.
            processed = prefilled[0]
            self.reset_conversation()  # the cache holds part of the prompt
            if capture is not None:
                capture.discard()
            prompt_done = time.perf_counter()
        except BaseException:
            self.reset_conversation()  # the cache may hold half a step: do not reuse it
            raise
        finally:
            responses.close()
        if finish == "length" and limit < s.max_tokens:
            finish = "context"
        if ids:
            # Every yielded token was also run through the model: the cache holds them all.
            self._cached_tokens = tokens + ids
        try:
            event = self._token_event(rid, ids, texts, sent, len(ids), capture, final=True)
            if event is not None:
                yield event
        except BaseException:
            self.reset_conversation()
            raise
        # The step that processed the last token may still be running (mlx-lm queues it
        # ahead); wait for it so that the figures, and the next request, start from rest.
        mx.synchronize()
        end = time.perf_counter()
        # Speeds by this process's clock, routing transfers included (mlx-lm's own figures
        # leave them out): prompt = request to prompt routing on the host; decode = tokens
        # after that to the last token's routing on the host.
        yield Finished(rid, "".join(texts), Stats(
            prompt_tokens=processed, cached_tokens=cached, generation_tokens=len(ids),
            ttft_s=ttft,
            prompt_tps=(processed / (prompt_done - start) if ids or processed else 0.0),
            generation_tps=len(ids) / (end - first_token) if ids else 0.0,
            peak_memory_bytes=int(mx.get_peak_memory()),
            kv_cache_bytes=int(sum(c.nbytes for c in self._cache or [])),
            finish_reason=finish, system_merged=system_merged,
        ))

    def _prompt_event(self, rid: int, feed: list[int], capture: RoutingCapture | None) -> Tokens:
        routing = None
        if capture is not None:
            routing = capture.drain(capture.pending_steps - 1)
            if routing is None or len(routing) != len(feed):
                got = 0 if routing is None else len(routing)
                raise AssertionError(
                    f"routing capture saw {got} prompt tokens, expected {len(feed)}")
        return Tokens(rid, "prompt", 0, tuple(feed), tuple(self._token_texts(feed)), routing)

    def _token_event(self, rid: int, ids: list[int], texts: list[str], start: int, stop: int,
                     capture: RoutingCapture | None, final: bool = False) -> Tokens | None:
        if stop <= start:
            return None
        routing = None
        if capture is not None:
            steps = None if final else stop - start
            routing = capture.drain(steps)
            if routing is None or len(routing) != stop - start:
                got = 0 if routing is None else len(routing)
                raise AssertionError(f"routing capture has {got} records for {stop - start} tokens")
        return Tokens(rid, "generate", start, tuple(ids[start:stop]), tuple(texts[start:stop]),
                      routing)

    def _token_texts(self, ids: list[int]) -> list[str]:
        """Each token's piece of text, as a streaming detokenizer splits it."""
        # deferred: mlx-lm (with transformers) takes about 2 s to import
        from mlx_lm.tokenizer_utils import NaiveStreamingDetokenizer

        detok = self.tokenizer.detokenizer
        if isinstance(detok, NaiveStreamingDetokenizer):
            # It decodes everything so far on every token (quadratic for a long prompt):
            # decode a short window around each token instead.
            decode = self.tokenizer.decode
            return [decode(ids[max(0, i - 8):i + 1])[len(decode(ids[max(0, i - 8):i])):]
                    for i in range(len(ids))]
        out = []
        for tok in ids:
            detok.add_token(tok)
            out.append(detok.last_segment)
        detok.finalize()
        if out:
            out[-1] += detok.last_segment
        return out

