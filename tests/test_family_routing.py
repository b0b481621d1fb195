"""Every MoE family on a tiny random model of it (mlx-lm's own classes, float32): routing
as the model computed it, checked against an independent recomputation (family_harness.py);
the same tokens with capture on and off; experts per token; dense layers and shared experts
as the family's config says; the trace of `mixtui generate`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from family_harness import REFERENCES, check_routing, generate, greedy

from mixtui.app.trace import read_trace
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import Sampling
from mixtui.engine.session import Session
from mixtui.families import family_for, moe_model_types

PROMPT = "w5 w6 w7 w8 w9 w10"
MOE_TYPES = moe_model_types()


def test_every_moe_family_has_a_reference() -> None:
    assert set(MOE_TYPES) <= set(REFERENCES)


@pytest.fixture(scope="module", params=MOE_TYPES)
def session(request: pytest.FixtureRequest, tiny_family_dir) -> Session:
    return Session.load(str(tiny_family_dir(request.param)))


def test_routing_matches_the_recomputation_and_capture_changes_nothing(session: Session
                                                                       ) -> None:
    family = family_for(session.geometry.model_type)
    assert family is not None
    info = session.info()
    assert info.moe_layers == session.geometry.moe_layers and info.moe_layers
    assert info.shared_experts == session.geometry.shared_experts
    assert info.family == family.name and info.scoring == family.scoring
    # the parameter accounting is exact: float32 weights, four bytes each
    assert info.weight_bytes == 4 * info.total_params
    assert info.active_params < info.total_params
    on = check_routing(session, PROMPT)
    # sampled (greedy is above): the same tokens with capture off
    sampling = Sampling(temperature=0.9, seed=3, max_tokens=8)
    a = generate(session, PROMPT, sampling, capture=True)
    session.reset_conversation()
    b = generate(session, PROMPT, sampling, capture=False)
    session.reset_conversation()
    assert a.generated == b.generated and len(a.generated) == 8
    off = generate(session, PROMPT, greedy(8), capture=False)
    session.reset_conversation()
    assert off.generated == on.generated


def test_experts_per_token_override(session: Session) -> None:
    family = family_for(session.geometry.model_type)
    assert family is not None
    default = session.top_k
    most = family.max_experts_per_token(session.config)
    try:
        for k in sorted({1, most}):
            session.set_experts_per_token(k)
            assert session.info().top_k == k
            check_routing(session, PROMPT, k=k)
            assert session.info().active_params == family.inventory(session.config).active(k)
    finally:
        session.set_experts_per_token(None)
    assert session.top_k == default


# The command line's path is the same for every family (the engine's capture, checked above
# for each); it is run on one family of each kind: a "logits" router with a shared expert and
# linear attention, a "choice" router with dense layers and shared experts, a sigmoid router.
# `python scripts/check_families.py` runs it for every family.
CLI_TYPES = ("qwen3_next", "deepseek_v2", "glm4_moe")


@pytest.mark.parametrize("model_type", CLI_TYPES)
def test_generate_trace(cli_env: dict[str, str], tiny_family_dir, model_type: str,
                        tmp_path: Path) -> None:
    session = Session.load(str(tiny_family_dir(model_type)))
    trace = tmp_path / "t.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "mixtui", "generate", "--model", session.path, "--prompt",
         PROMPT, "--max-tokens", "5", "--temp", "0", "--trace", str(trace)],
        env=cli_env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    header, records, summary = read_trace(trace)
    assert header["model_type"] == session.geometry.model_type
    assert header["moe_layers"] == list(session.geometry.moe_layers)
    assert header["dense_layers"] == list(session.geometry.dense_layers)
    assert header["shared_experts"] == session.geometry.shared_experts
    assert header["scoring"] == session.adapter.scoring  # type: ignore[union-attr]
    assert summary is not None and summary["generation_tokens"] == 5
    traced = RoutingBatch(np.array([r["experts"] for r in records], np.int32),
                          np.array([r["weights"] for r in records], np.float32),
                          np.array([r["probs"] for r in records], np.float32))
    here = check_routing(session, PROMPT, sampling=greedy(5))
    assert here.ids == [r["id"] for r in records]
    assert here.routing is not None
    np.testing.assert_allclose(traced.weights, here.routing.weights, atol=1e-4)
    np.testing.assert_allclose(traced.probs, here.routing.probs, atol=1e-4)
