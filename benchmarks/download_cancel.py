"""How long `mixtui download` takes to stop on ctrl+c, against the mock Hub of the tests.

Each run starts a real `mixtui download` in a session of its own (as a terminal would), waits
until the weights are being written, sends SIGINT to the whole process group, and times the
exit; it also counts the partial files left behind (there should be none).

    python benchmarks/download_cancel.py [--runs 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]


def _ctrl_c_default() -> None:
    """SIGINT as in a terminal, even where this script runs with it ignored (background)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main() -> None:
    from mockhub import MockHub

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mixtui-cancel-"))
    times = []
    with MockHub() as hub:
        hub.add_repo("bench/model", {"config.json": b"{}", "tokenizer.json": b"{}",
                                     "model.safetensors": os.urandom(4_000_000)})
        hub.throttle(100_000)  # the weights take 40 s: always cancelled part-way
        for run in range(args.runs):
            cache = work / "hf"
            shutil.rmtree(cache, ignore_errors=True)
            env = {k: v for k, v in os.environ.items() if not k.startswith("HF_HUB_OFFLINE")}
            env.update(HF_ENDPOINT=hub.url, HF_HOME=str(cache), HF_HUB_CACHE=str(cache / "hub"),
                       HF_HUB_DISABLE_TELEMETRY="1", MIXTUI_CONFIG_DIR=str(work / "config"),
                       PYTHONPATH=str(ROOT))
            proc = subprocess.Popen([sys.executable, "-m", "mixtui", "download", "bench/model"],
                                    env=env, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True, preexec_fn=_ctrl_c_default)
            assert proc.stderr is not None
            for line in proc.stderr:
                if "model.safetensors" in line:  # being written
                    break
            time.sleep(1.0)
            sent = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait()
            times.append(time.monotonic() - sent)
            left = len(list(cache.rglob("*.incomplete")))
            print(f"run {run}: exit code {proc.returncode} after {times[-1] * 1000:.0f} ms, "
                  f"partial files left: {left}")
    shutil.rmtree(work, ignore_errors=True)
    print(f"ctrl+c to exit: median {statistics.median(times) * 1000:.0f} ms, "
          f"max {max(times) * 1000:.0f} ms over {len(times)} runs")


if __name__ == "__main__":
    main()
