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

BARE = Path(__file__).resolve().parent / "bare_app.py"


def one_run(command: list[str], cols: int = 140, rows: int = 45) -> float:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "first-frame"
        env = dict(os.environ, MIXTUI_FIRST_FRAME_FILE=str(report),
                   MIXTUI_EXIT_AFTER_FIRST_FRAME="1", MIXTUI_CONFIG_DIR=tmp, TERM="xterm-256color")

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
        proc = subprocess.Popen(command, stdin=slave, stdout=slave,
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
    args = parser.parse_args()
    mixtui = [sys.executable, "-m", "mixtui"]
    bare = [sys.executable, str(BARE)]
    one_run(mixtui)  # warm the file cache once: a user's second launch
    one_run(bare)
    times: dict[str, list[float]] = {"mixtui": [], "bare": []}
    for _ in range(args.runs):  # interleaved: both see the same moments of a busy machine
        times["mixtui"].append(one_run(mixtui))
        times["bare"].append(one_run(bare))
    result = {"runs": args.runs, "mixtui": _summary(times["mixtui"]),
              "bare": _summary(times["bare"])}
    result["ratio"] = round(result["mixtui"]["median_s"] / result["bare"]["median_s"], 3)
    if args.json:
        print(json.dumps(result))
    else:
        for name in ("mixtui", "bare"):
            r = result[name]
            print(f"{name:>6}: launch to first frame median {r['median_s'] * 1000:.0f} ms "
                  f"(min {r['min_s'] * 1000:.0f}, max {r['max_s'] * 1000:.0f})")
        print(f"ratio mixtui / bare: {result['ratio']:.2f} over {args.runs} interleaved runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
