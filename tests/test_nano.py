"""The bundled nano model: loads with stock mlx-lm, writes English, routes across all experts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mixtui.app.trace import read_trace
from mixtui.core.paths import PACKAGE_DIR
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import Sampling
from mixtui.engine.messages import Generate, Tokens
from mixtui.engine.session import Session

NANO = PACKAGE_DIR / "models" / "nano"
# Written for this test (not from the training text): ordinary English narrative.
PASSAGE = (
    "The morning was fine and the party set out early for the village. Mrs. Bennet had "
    "spoken of nothing else for a week, and her daughters were tired of hearing of it. "
    "When they reached the inn, the carriage was waiting, and a young gentleman stood "
    "beside it, looking as though he had not slept. He bowed to the eldest sister and "
    "asked whether she would walk with him to the church, for he had a letter to deliver "
    "and did not know the way. She answered that she would be glad to go, if her mother "
    "could spare her, and the two of them went off together across the green, while the "
    "others watched from the window and wondered what it could mean."
)


@pytest.fixture(scope="module")
def nano() -> Session:
    return Session.load(str(NANO))


def test_loads_with_stock_mlx_lm() -> None:
    from mlx_lm import generate, load

    model, tokenizer = load(str(NANO))
    text = generate(model, tokenizer, "It is a truth universally acknowledged", max_tokens=12)
    assert model.model_type == "mixtral" and len(model.layers) >= 4
    assert len(text.split()) >= 3


def test_routes_every_token_across_all_experts(nano: Session) -> None:
    events = list(nano.generate(Generate(1, (("user", PASSAGE),), completion=True,
                                         sampling=Sampling(temperature=0.0, max_tokens=40))))
    tokens = [e for e in events if isinstance(e, Tokens)]
    routing = RoutingBatch.concat([e.routing for e in tokens if e.routing is not None])
    processed = sum(len(e.ids) for e in tokens)
    assert len(routing) == processed > 200
    assert routing.experts.shape == (processed, 4, 2)
    for layer in range(4):
        top1 = np.bincount(routing.experts[:, layer, 0], minlength=8) / processed
        assert top1.min() >= 0.02, (layer, top1)  # no dead expert: the balancing loss worked
    words = re.findall(r"[A-Za-z]+", "".join(t for e in tokens if e.phase == "generate"
                                             for t in e.texts))
    common = {"the", "and", "of", "to", "a", "i", "he", "she", "was", "her", "his", "in",
              "that", "it", "not", "be", "had", "have", "said", "with", "for", "as", "you"}
    assert len(words) >= 10 and sum(w.lower() in common for w in words) >= 3, words


def test_generate_trace_on_nano(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    env = dict(os.environ, MIXTUI_CONFIG_DIR=str(tmp_path / "config"))
    done = subprocess.run(
        [sys.executable, "-m", "mixtui", "generate", "--model", "nano", "--prompt",
         "It is a truth universally acknowledged", "--max-tokens", "24", "--seed", "1",
         "--trace", str(trace)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    header, tokens, summary = read_trace(trace)
    assert header["model"] == "nano" and header["moe_layers"] == [0, 1, 2, 3]
    assert summary is not None and summary["generation_tokens"] == 24
    generated = [t for t in tokens if t["phase"] == "generate"]
    assert [t["id"] for t in generated] == summary["token_ids"]
    assert "".join(t["text"] for t in generated) == summary["text"]
    assert done.stdout.strip() == summary["text"].strip()
    assert all(len(t["experts"]) == 4 and len(t["probs"][0]) == 8 for t in tokens)
