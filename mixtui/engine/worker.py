"""The engine process: owns MLX, runs one command at a time, answers with events.

Started by `EngineProcess` with the spawn method, so nothing of the caller (threads, a
terminal UI) is inherited. If MLX aborts or the system kills it for memory, only this process
dies; ending it is also how a model's memory goes back to the system.
"""

from __future__ import annotations

import os
import signal
import traceback
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path

from mixtui.core.errors import MixtuiError
from mixtui.engine.messages import (
    Bench,
    Failed,
    Generate,
    Load,
    LoadSynthetic,
    Perplexity,
    Probe,
    ProbeMeasured,
    Ready,
    ResetConversation,
    SetExpertsPerToken,
    Shutdown,
)

_OUT_OF_MEMORY = ("MLX ran out of memory; lower the context (max_kv_size) or pick a smaller "
                  "model.")


def _redirect_output(log_path: Path | None) -> None:
    """Nothing the engine (or a library in it) prints may land in the caller's stdout or UI."""
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)
    os.dup2(2, 1)


def _device_name() -> str:
    import mlx.core as mx  # deferred: MLX only ever in this process

    return "gpu" if mx.default_device().type == mx.gpu else "cpu"


def serve(conn: Connection, cancel: MpEvent, log_path: Path | None = None) -> None:
    """Entry point of the engine process."""
    _redirect_output(log_path)
    # ctrl+c in a terminal reaches the whole process group; the caller decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from mixtui.engine.session import Session  # imports MLX: only ever in this process

    session: Session | None = None
    while True:
        try:
            command = conn.recv()
        except EOFError:  # the caller is gone
            return
        request_id = getattr(command, "request_id", None)
        try:
            if isinstance(command, Shutdown):
                return
            if isinstance(command, Load):
                session = None  # drop the old model before the new one comes in
                session = Session.load(command.path, command.name, command.max_kv_size,
                                       progress=conn.send)
                if command.experts_per_token is not None:
                    session.set_experts_per_token(command.experts_per_token)
                conn.send(Ready(session.info()))
            elif isinstance(command, LoadSynthetic):
                session = None
                session = Session.synthetic(command.name, command.config, command.quantization,
                                            command.seed, progress=conn.send)
                conn.send(Ready(session.info()))
            elif isinstance(command, Probe):
                from mixtui.engine import bench  # deferred: only a benchmark needs it

                conn.send(ProbeMeasured(command.request_id, bench.probe_bandwidth(),
                                        _device_name(), 512))
            elif session is None:
                conn.send(Failed(request_id, "No model is loaded; load one first.",
                                 code="no-model"))
            elif isinstance(command, Generate):
                # The caller clears `cancel` when it sends the request (not here), so a stop
                # pressed while the request waited in the pipe still counts.
                for event in session.generate(command, should_stop=cancel.is_set):
                    conn.send(event)
            elif isinstance(command, Bench):
                session.bench(command, conn.send, should_stop=cancel.is_set)
            elif isinstance(command, Perplexity):
                conn.send(session.perplexity(command, conn.send, should_stop=cancel.is_set))
            elif isinstance(command, SetExpertsPerToken):
                session.set_experts_per_token(command.k)
                conn.send(Ready(session.info()))
            elif isinstance(command, ResetConversation):
                session.reset_conversation()
            else:
                conn.send(Failed(request_id, f"internal error: unknown command {command!r}; "
                                 "please report it."))
        except MixtuiError as exc:  # one sentence; what led to it only for --debug
            conn.send(Failed.of(request_id, exc))
        except MemoryError:
            conn.send(Failed(request_id, _OUT_OF_MEMORY, code="out-of-memory"))
        except RuntimeError as exc:
            if "memory" in str(exc).lower():  # MLX reports a failed allocation this way
                conn.send(Failed(request_id, _OUT_OF_MEMORY, traceback.format_exc(),
                                 code="out-of-memory"))
            else:
                conn.send(Failed(request_id, f"internal error: {exc!r}; please report it.",
                                 traceback.format_exc(), code="internal-error"))
        except Exception as exc:  # a bug: report it with its traceback, keep serving
            conn.send(Failed(request_id, f"internal error: {exc!r}; please report it.",
                             traceback.format_exc(), code="internal-error"))
