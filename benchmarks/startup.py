"""How long from launching `mixtui` to its first frame on a terminal?

    python benchmarks/startup.py [--runs 7] [--json]

Each run starts `python -m mixtui` on a pseudo-terminal (140x45), as a user's shell would,
with MIXTUI_FIRST_FRAME_FILE set: the app writes the wall-clock time of its first completed
refresh there (and, with MIXTUI_EXIT_AFTER_FIRST_FRAME, exits at once, before the engine
starts). Reported: the median and the spread of (first frame - just before the launch).
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


def one_run(cols: int = 140, rows: int = 45) -> float:
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
        proc = subprocess.Popen([sys.executable, "-m", "mixtui"], stdin=slave, stdout=slave,
                                stderr=slave, env=env, start_new_session=True)
        try:
            code = proc.wait(timeout=60)
        finally:
            os.close(slave)
            if proc.poll() is None:
                proc.kill()
        os.close(master)
        if code != 0 or not report.exists():
            raise SystemExit(f"mixtui exited with {code} before its first frame")
        return float(report.read_text()) - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    one_run()  # warm the file cache once: a user's second launch
    times = [one_run() for _ in range(args.runs)]
    result = {"runs": args.runs, "median_s": round(statistics.median(times), 4),
              "min_s": round(min(times), 4), "max_s": round(max(times), 4)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"launch to first frame: median {result['median_s'] * 1000:.0f} ms "
              f"(min {result['min_s'] * 1000:.0f}, max {result['max_s'] * 1000:.0f}) "
              f"over {args.runs} runs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
