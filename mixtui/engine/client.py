"""The caller's side of the engine process: send commands, receive events, survive its death."""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
from collections.abc import Iterator
from multiprocessing import resource_tracker
from multiprocessing.connection import wait
from pathlib import Path

from mixtui.engine import blas
from mixtui.engine.messages import (
    Bench,
    Command,
    EngineExited,
    Event,
    Generate,
    Perplexity,
    Shutdown,
)
from mixtui.engine.worker import serve

_CTX = mp.get_context("spawn")


def _ensure_resource_tracker() -> None:
    """Start multiprocessing's helper process while sys.stderr is a real file.

    It hands sys.stderr's descriptor to that process; under a Textual app sys.stderr is a
    capture object without one, and the start fails ("bad value(s) in fds_to_keep").
    """
    saved = sys.stderr
    try:
        if sys.__stderr__ is not None:
            sys.stderr = sys.__stderr__
        resource_tracker.ensure_running()
    finally:
        sys.stderr = saved


class EngineProcess:
    """A worker process that owns MLX. Start one per model; close it to free the memory."""

    def __init__(self, log_path: Path | None = None) -> None:
        """`log_path`: where the engine's own stdout/stderr go (default: this stderr)."""
        _ensure_resource_tracker()
        self._conn, child = _CTX.Pipe()
        self._cancel = _CTX.Event()
        self.process = _CTX.Process(target=serve, args=(child, self._cancel, log_path),
                                    name="mixtui-engine", daemon=True)
        with blas.preload_for_children():  # Linux: an optimised BLAS for MLX, if installed
            self.process.start()
        child.close()
        self.exited: EngineExited | None = None
        # close() may come from two threads at once (quitting, and the reader that the
        # quitting woke): one of them closes, the other waits for it and returns.
        self._close_lock = threading.Lock()
        self._closing = False
        self._closed = False
        # A pipe closed under a reader blocked on it frees its descriptor for the next
        # engine's pipe, and the reader would take that engine's messages: while a reader is
        # in next_event, close() leaves the pipe to it (it sees the end and closes it).
        self._readers = 0
        self._pipe_lock = threading.Lock()
        self._pipe_open = True

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def send(self, command: Command) -> None:
        if isinstance(command, Generate | Bench | Perplexity):  # stoppable: a fresh start
            self._cancel.clear()
        try:
            self._conn.send(command)
        except (BrokenPipeError, ConnectionResetError, OSError):
            self._note_exit()

    def cancel(self) -> None:
        """Ask the running generation to stop after the current token."""
        self._cancel.set()

    def _note_exit(self) -> EngineExited:
        if self.exited is None:
            self.process.join(timeout=1.0)
            self.exited = EngineExited(self.process.exitcode)
        return self.exited

    def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event; None on timeout; EngineExited once the process is gone."""
        if self.exited is not None:
            return self.exited
        with self._pipe_lock:
            if not self._pipe_open:  # closed: the process is gone
                return self._note_exit()
            self._readers += 1
        try:
            ready = wait([self._conn, self.process.sentinel], timeout)
            if not ready:
                return None
            if self._conn in ready or self._conn.poll():
                try:
                    event: Event = self._conn.recv()
                    return event
                except (EOFError, OSError):
                    pass
            return self._note_exit()
        finally:
            with self._pipe_lock:
                self._readers -= 1
                if self._closed and not self._readers:
                    self._close_pipe()

    def events(self, timeout: float | None = None) -> Iterator[Event]:
        """Events until the process exits (or `timeout` passes with none)."""
        while True:
            event = self.next_event(timeout)
            if event is None:
                return
            yield event
            if isinstance(event, EngineExited):
                return

    def close(self, timeout: float = 2.0) -> None:
        """Stop the process (politely, then not); its memory goes back to the system.
        Closing it again, from any thread, does nothing."""
        with self._close_lock:
            if not self._closing:
                self._closing = True
                self._close(timeout)

    def _close(self, timeout: float) -> None:
        if self.process.is_alive():
            self._cancel.set()
            with contextlib.suppress(OSError):  # it may be exiting already
                self._conn.send(Shutdown())
            self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        if self.process.exitcode is None and self.process.pid is not None:
            # Python never saw it end (e.g. its status was collected elsewhere): make sure.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.process.pid, signal.SIGKILL)
        with self._pipe_lock:
            self._closed = True
            if not self._readers:  # else the reader closes it on its way out (see __init__)
                self._close_pipe()

    def _close_pipe(self) -> None:
        if self._pipe_open:
            self._pipe_open = False
            self._conn.close()
