"""How long from launching `mixtui` to its first frame on a terminal, against a bare
Textual app (a Static, an Input, a Footer: benchmarks/bare_app.py) measured side by side?

    python benchmarks/startup.py [--runs 9] [--json]

Each run starts `python -m mixtui` on a pseudo-terminal (140x45), as a user's shell would,
with MIXTUI_FIRST_FRAME_FILE set: the app writes the wall-clock time of its first completed
refresh there (and, with MIXTUI_EXIT_AFTER_FIRST_FRAME, exits at once, before the engine
starts). The bare app is launched the same way, alternating with mixtui, so that both see
the same machine. Reported: the medians and spread of (first frame - just before the
launch), and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path
from typing import Any

BARE = Path(__file__).resolve().parent / "bare_app.py"
LAYOUT = Path(__file__).resolve().parent / "layout_app.py"


def one_run(command: list[str], cols: int = 140, rows: int = 45,
            tree: str | None = None) -> float:
    """Seconds from launch to first frame; `tree`: a checkout whose mixtui runs instead."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "first-frame"
        env = dict(os.environ, MIXTUI_FIRST_FRAME_FILE=str(report),
                   MIXTUI_EXIT_AFTER_FIRST_FRAME="1", MIXTUI_CONFIG_DIR=tmp, TERM="xterm-256color")
        if tree is not None:  # found before the installed one (the run starts in `tmp`)
            env["PYTHONPATH"] = tree

        def drain() -> None:  # the terminal's reader: keep the pty from filling up
            while True:
                try:
                    if not os.read(master, 65536):
                        return
                except OSError:
                    return

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        start = time.time()
        proc = subprocess.Popen(command, stdin=slave, stdout=slave, cwd=tmp,
                                stderr=slave, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=60)
        finally:
            os.close(slave)
            if proc.poll() is None:
                proc.kill()
        os.close(master)
        if code != 0 or not report.exists():
            raise SystemExit(f"{' '.join(command)} exited with {code} before its first frame")
        return float(report.read_text()) - start


def _summary(times: list[float]) -> dict[str, float]:
    return {"median_s": round(statistics.median(times), 4), "min_s": round(min(times), 4),
            "max_s": round(max(times), 4)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--layout", action="store_true",
                        help="also time mixtui's screen in plain Textual (layout_app.py)")
    parser.add_argument("--before", metavar="DIR",
                        help="also time the mixtui of another checkout (e.g. an older commit)")
    args = parser.parse_args()
    commands = {"mixtui": [sys.executable, "-m", "mixtui"], "bare": [sys.executable, str(BARE)]}
    if args.layout:
        commands["layout"] = [sys.executable, str(LAYOUT)]
    trees = {"mixtui": str(Path(__file__).resolve().parent.parent)}
    if args.before:
        commands["before"] = commands["mixtui"]
        trees["before"] = str(Path(args.before).resolve())
    for name, command in commands.items():
        one_run(command, tree=trees.get(name))  # warm the file cache: a user's second launch
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):  # interleaved: all see the same moments of a busy machine
        for name, command in commands.items():
            times[name].append(one_run(command, tree=trees.get(name)))
    result: dict[str, Any] = {"runs": args.runs}
    result |= {name: _summary(t) for name, t in times.items()}
    result["ratio"] = round(result["mixtui"]["median_s"] / result["bare"]["median_s"], 3)
    if args.before:
        result["before_ratio"] = round(result["before"]["median_s"]
                                       / result["bare"]["median_s"], 3)
    if args.layout:
        result["layout_ratio"] = round(result["layout"]["median_s"]
                                       / result["bare"]["median_s"], 3)
    if args.json:
        print(json.dumps(result))
    else:
        for name in commands:
            r = result[name]
            print(f"{name:>7}: launch to first frame median {r['median_s'] * 1000:.0f} ms "
                  f"(min {r['min_s'] * 1000:.0f}, max {r['max_s'] * 1000:.0f})")
        print(f"ratio mixtui / bare: {result['ratio']:.2f} over {args.runs} interleaved runs")
        if args.before:
            print(f"ratio before / bare: {result['before_ratio']:.2f} ({args.before})")
        if args.layout:
            print(f"ratio layout / bare: {result['layout_ratio']:.2f} (the same screen in plain "
                  "Textual)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
