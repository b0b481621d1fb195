"""Conversation: the token log with routing, its files, and the trace export (no model loaded)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mixtui.app.conversation import Conversation, ConversationError
from mixtui.app.trace import read_trace
from mixtui.core.errors import MixtuiError
from mixtui.core.routing import RoutingBatch
from mixtui.core.types import ModelInfo, Phase, Stats
from mixtui.engine.messages import Finished, Tokens

L, E = 2, 4  # MoE layers, experts


def model_info(layers: int = L, experts: int = E, k: int = 2) -> ModelInfo:
    return ModelInfo(name="tiny", path="/models/tiny", model_type="mixtral", num_layers=layers,
                     moe_layers=tuple(range(layers)), num_experts=experts, top_k=k,
                     default_top_k=2, total_params=1000, active_params=500, weight_bytes=4000,
                     kv_bytes_per_token=64, max_kv_size=4096, chat_template=True,
                     vocab_size=256, device="cpu")


DENSE = replace(model_info(), model_type="mistral", moe_layers=(), num_experts=0, top_k=0,
                default_top_k=0)


def random_routing(n: int, k: int = 2, seed: int = 0) -> RoutingBatch:
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, L, E)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    experts = np.argsort(-probs, axis=-1)[..., :k].astype(np.int32)
    chosen = np.take_along_axis(probs, experts, axis=-1)
    weights = (chosen / chosen.sum(axis=-1, keepdims=True)).astype(np.float32)
    return RoutingBatch(experts, weights, probs.astype(np.float32))


def stats(generated: int, reason: str = "stop") -> Stats:
    return Stats(prompt_tokens=5, cached_tokens=0, generation_tokens=generated, ttft_s=0.0125,
                 prompt_tps=400.0, generation_tps=123.456789, peak_memory_bytes=1 << 20,
                 kv_cache_bytes=4096, finish_reason=reason)


class Feed:
    """Sends a request's events the way the engine does: one prompt event, then generated
    tokens in small events, then Finished."""

    def __init__(self, conv: Conversation, moe: bool = True):
        self.conv, self.moe, self.seed = conv, moe, 0
        self.sent: list[Tokens] = []

    def event(self, rid: int, phase: Phase, start: int, ids: list[int], k: int = 2,
              capture: bool = True) -> Tokens:
        self.seed += 1
        routing = random_routing(len(ids), k, self.seed) if self.moe and capture else None
        event = Tokens(rid, phase, start, tuple(ids), tuple(f"<{t}>" for t in ids), routing)
        self.conv.add_tokens(event)
        self.sent.append(event)
        return event

    def request(self, rid: int, user: str, prompt: list[int], generated: list[int],
                chunk: int = 2, k: int = 2, capture: bool = True, finish: bool = True) -> None:
        self.conv.add_user(user)
        self.event(rid, "prompt", 0, prompt, k, capture)
        for start in range(0, len(generated), chunk):
            self.event(rid, "generate", start, generated[start:start + chunk], k, capture)
        if finish:
            text = "".join(f"<{t}>" for t in generated)
            self.conv.finish(Finished(rid, text, stats(len(generated))))


def two_answers(moe: bool = True) -> tuple[Conversation, Feed]:
    conv = Conversation("tiny", model_info() if moe else DENSE, system="Be brief.")
    feed = Feed(conv, moe)
    feed.request(7, "Hello", [1, 2, 3, 4, 5], [10, 11, 12, 13, 2])
    feed.request(8, "And then?", [14, 15, 16], [20, 21, 22], chunk=1)
    return conv, feed


def concat(events: list[Tokens]) -> RoutingBatch:
    return RoutingBatch.concat([e.routing for e in events if e.routing is not None])


# -- the log --------------------------------------------------------------------------------------
def test_log_follows_the_events() -> None:
    conv, feed = two_answers()
    assert len(conv) == 16
    assert conv.turns == [("user", "Hello"), ("assistant", "<10><11><12><13><2>"),
                          ("user", "And then?"), ("assistant", "<20><21><22>")]
    assert conv.messages() == tuple(conv.turns) and not conv.pending
    assert [s.generation_tokens for s in conv.stats] == [5, 3]
    assert list(conv.ids) == [1, 2, 3, 4, 5, 10, 11, 12, 13, 2, 14, 15, 16, 20, 21, 22]
    assert list(conv.phases) == ["prompt"] * 5 + ["generate"] * 5 + ["prompt"] * 3 + [
        "generate"] * 3
    assert list(conv.requests) == [0] * 10 + [1] * 6
    assert conv.request_range(1) == (10, 16) and conv.request_range(2) == (16, 16)
    r = conv.routing()
    assert r is not None
    want = concat(feed.sent)
    for got, expected in zip((r.experts, r.weights, r.probs),
                             (want.experts, want.weights, want.probs), strict=True):
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    t = conv.token(12)
    assert (t.id, t.text, t.phase, t.request) == (16, "<16>", "prompt", 1)
    assert t.routing is not None and np.array_equal(t.routing.experts, want.experts[12])
    assert np.array_equal(t.routing.probs, want.probs[12])
    assert conv.token(-1).id == 22
    with pytest.raises(IndexError):
        conv.token(16)
    assert conv.layers == L and conv.num_experts == E


def test_routing_is_read_lazily_and_cached() -> None:
    conv = Conversation("tiny", model_info())
    feed = Feed(conv)
    conv.add_user("Hi")
    feed.event(1, "prompt", 0, [1, 2, 3])
    first = conv.routing()
    assert first is not None and conv.routing() is first  # nothing new: the same object
    assert not first.experts.flags.writeable
    with pytest.raises(ValueError):
        first.probs[0, 0, 0] = 1.0
    snapshot = first.experts.copy()
    for start in range(0, 200, 2):  # many small batches, read after each one
        feed.event(1, "generate", start, [50, 51])
        assert len(conv.routing()) == len(conv)  # type: ignore[arg-type]
    assert np.array_equal(first.experts, snapshot)  # views handed out never change
    later = conv.routing()
    assert later is not None and np.array_equal(later.experts[:3], snapshot)
    assert np.array_equal(later.weights, concat(feed.sent).weights)


def test_views_survive_dropping_and_refilling() -> None:
    conv, feed = two_answers()
    conv.add_user("Third")
    feed.event(9, "prompt", 0, [30, 31])
    before = conv.routing()
    assert before is not None
    kept = before.probs.copy()
    conv.drop_unanswered()
    feed.request(10, "Third again", [32, 33], [34])
    assert np.array_equal(before.probs, kept)


def test_dense_conversation_has_no_routing(tmp_path: Path) -> None:
    conv, _ = two_answers(moe=False)
    assert conv.routing() is None and conv.token(0).routing is None
    assert conv.counts().shape == (0, 0)
    with pytest.raises(IndexError):
        conv.top1(0)
    conv.save(tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["routing"] is None
    loaded = Conversation.load(tmp_path / "c.json")
    assert loaded.routing() is None and list(loaded.ids) == list(conv.ids)
    assert loaded.info == DENSE


def test_drop_unanswered() -> None:
    conv, feed = two_answers()
    before = conv.routing()
    assert before is not None
    n = len(conv)
    feed.request(9, "This will fail", [40, 41, 42], [43, 44, 45], finish=False)
    assert conv.pending and len(conv) == n + 6 and set(conv.requests[n:]) == {2}
    conv.drop_unanswered()
    assert len(conv) == n and not conv.pending and len(conv.turns) == 4
    after = conv.routing()
    assert after is not None and np.array_equal(after.experts, before.experts)
    # A failure before any token: only the user turn goes.
    conv.add_user("Again")
    conv.drop_unanswered()
    assert len(conv.turns) == 4 and len(conv) == n
    # The next request gets the next answer index and starts its phases at 0.
    feed.request(11, "Once more", [50], [51, 52])
    assert list(conv.requests[n:]) == [2, 2, 2] and len(conv.stats) == 3


def test_events_out_of_order_are_refused() -> None:
    conv = Conversation("tiny", model_info())
    feed = Feed(conv)
    conv.add_user("Hi")
    feed.event(1, "prompt", 0, [1, 2])
    with pytest.raises(ValueError, match="request 2"):
        feed.event(2, "generate", 0, [3])
    with pytest.raises(ValueError, match="from 1"):
        feed.event(1, "generate", 1, [3])  # the first generated token is missing
    with pytest.raises(ValueError, match="3 tokens"):
        conv.add_tokens(Tokens(1, "generate", 0, (3, 4, 5), ("a", "b", "c"),
                               random_routing(2)))
    with pytest.raises(ValueError, match="request 5"):
        conv.finish(Finished(5, "", stats(0)))
    assert len(conv) == 2


def test_leftovers_of_an_unfinished_request_are_replaced() -> None:
    conv, feed = two_answers()
    n = len(conv)
    feed.request(9, "Saved mid-answer", [40, 41], [42], finish=False)
    conv._end()  # what loading a file saved mid-answer leaves: no request in flight
    feed.event(12, "prompt", 0, [60, 61])
    conv.finish(Finished(12, "", stats(0, "cancelled")))
    assert list(conv.ids[n:]) == [60, 61] and list(conv.requests[n:]) == [2, 2]


def test_capture_off_for_one_request_and_k_changed() -> None:
    conv = Conversation("tiny", model_info())
    feed = Feed(conv)
    feed.request(1, "no capture", [1, 2], [3], capture=False)
    feed.request(2, "k=2", [4, 5], [6, 7], k=2)
    feed.request(3, "k=3", [8], [9], k=3)
    r = conv.routing()
    assert r is not None and r.experts.shape == (len(conv), L, 3)
    assert (r.experts[:3] == -1).all() and (r.weights[:3] == 0).all() and (r.probs[:3] == 0).all()
    assert (r.experts[3:7, :, 2] == -1).all()
    assert conv.token(0).routing is None
    t4 = conv.token(4)
    assert t4.routing is not None and t4.routing.experts.shape == (L, 2)
    last = conv.token(-1).routing
    assert last is not None and last.weights.shape == (L, 3)
    assert conv.counts().sum() == (4 * 2 + 2 * 3) * L  # padding and capture-off rows: none
    assert conv.counts(request=0).sum() == 0
    assert list(conv.top1(0)[:3]) == [-1, -1, -1]


# -- counts and top1 against hand-computed values ---------------------------------------------
def hand_conversation() -> Conversation:
    conv = Conversation("tiny", model_info(experts=3))

    def batch(experts: list, weights: list) -> RoutingBatch:
        n = len(experts)
        probs = np.full((n, L, 3), 1 / 3, np.float32)
        return RoutingBatch(np.array(experts, np.int32), np.array(weights, np.float32), probs)

    conv.add_user("a")
    conv.add_tokens(Tokens(1, "prompt", 0, (100,), ("a",),
                           batch([[[0, 1], [2, 0]]], [[[0.6, 0.4], [0.3, 0.7]]])))
    conv.add_tokens(Tokens(1, "generate", 0, (101,), ("b",),
                           batch([[[1, 2], [1, 0]]], [[[0.5, 0.5], [0.9, 0.1]]])))
    conv.finish(Finished(1, "b", stats(1)))
    conv.add_user("c")
    conv.add_tokens(Tokens(2, "prompt", 0, (102,), ("c",),
                           batch([[[0, 1], [2, 0]]], [[[0.2, 0.8], [0.55, 0.45]]])))
    conv.finish(Finished(2, "", stats(0)))
    return conv


def test_counts_by_hand() -> None:
    conv = hand_conversation()
    assert conv.counts().tolist() == [[2, 3, 1], [3, 1, 2]]
    assert conv.counts().dtype == np.int64 and conv.counts() is conv.counts()  # cached
    assert conv.counts(request=0).tolist() == [[1, 2, 1], [2, 1, 1]]
    assert conv.counts(request=1).tolist() == [[1, 1, 0], [1, 0, 1]]
    assert conv.counts(phase="generate").tolist() == [[0, 1, 1], [1, 1, 0]]
    assert conv.counts(request=0, phase="prompt").tolist() == [[1, 1, 0], [1, 0, 1]]
    assert conv.counts(request=5).tolist() == [[0, 0, 0], [0, 0, 0]]


def test_top1_by_hand() -> None:
    conv = hand_conversation()
    assert conv.top1(0).tolist() == [0, 1, 1]  # token 1 ties: the earlier choice wins
    assert conv.top1(1).tolist() == [0, 1, 2]
    assert conv.top1(1, request=1).tolist() == [2]
    assert conv.top1(0).dtype == np.int32
    with pytest.raises(IndexError):
        conv.top1(2)


def test_clear() -> None:
    conv, feed = two_answers()
    conv.clear()
    assert len(conv) == 0 and conv.turns == [] and conv.stats == [] and conv.routing() is None
    assert conv.system == "Be brief." and conv.info == model_info()
    feed.request(3, "Fresh", [1], [2])
    assert list(conv.requests) == [0, 0] and conv.routing() is not None


# -- files ----------------------------------------------------------------------------------------
def assert_same(a: Conversation, b: Conversation) -> None:
    assert (a.model, a.info, a.system, a.turns, a.stats) == (b.model, b.info, b.system,
                                                             b.turns, b.stats)
    assert (list(a.ids), list(a.texts), list(a.phases), list(a.requests)) == (
        list(b.ids), list(b.texts), list(b.phases), list(b.requests))
    ra, rb = a.routing(), b.routing()
    assert (ra is None) == (rb is None)
    if ra is not None and rb is not None:
        for x, y in zip((ra.experts, ra.weights, ra.probs), (rb.experts, rb.weights, rb.probs),
                        strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape
            assert x.tobytes() == y.tobytes()  # bit-exact


def test_save_load_round_trip(tmp_path: Path) -> None:
    conv, _ = two_answers()
    conv.turns[0] = ("user", "Hello «ünïcode» \"quoted\"\nnewline")
    path = tmp_path / "chats" / "chat.json"  # the folder is made
    conv.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["chat.json"]  # no temp file left
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["format"] == "mixtui-conversation" and record["version"] == 1
    assert record["routing"]["probs"]["dtype"] == "float32"
    assert record["routing"]["probs"]["shape"] == [16, L, E]
    assert len(base64.b64decode(record["routing"]["probs"]["data"])) == 16 * L * E * 4
    loaded = Conversation.load(path)
    assert_same(conv, loaded)
    assert loaded.counts().tolist() == conv.counts().tolist()
    # It goes on as if it had never been saved.
    Feed(loaded).request(20, "More", [70], [71, 72])
    assert len(loaded.stats) == 3 and list(loaded.requests[-3:]) == [2, 2, 2]


def test_round_trip_with_padding_and_capture_off(tmp_path: Path) -> None:
    conv = Conversation("tiny", None)
    feed = Feed(conv)
    feed.request(1, "a", [1], [2], capture=False)
    feed.request(2, "b", [3], [4, 5], k=1)
    feed.request(3, "c", [6], [7], k=4)
    conv.add_user("unanswered")
    conv.save(tmp_path / "c.json")
    loaded = Conversation.load(tmp_path / "c.json")
    assert_same(conv, loaded)
    assert loaded.token(0).routing is None and loaded.pending
    t = loaded.token(3)
    assert t.routing is not None and t.routing.experts.shape == (L, 1)


def test_save_to_an_unusable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    conv, _ = two_answers()
    with pytest.raises(ConversationError) as err:
        conv.save(blocker / "c.json")
    assert str(blocker) in str(err.value) and str(err.value).endswith(".")


def write_bad(tmp_path: Path, change: Callable[[dict], object]) -> Path:
    conv, _ = two_answers()
    record = conv.to_dict()
    change(record)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def truncate_probs(record: dict) -> None:
    data = record["routing"]["probs"]["data"]
    record["routing"]["probs"]["data"] = data[:len(data) // 2 // 4 * 4]


def cut_mid_base64(record: dict) -> None:
    record["routing"]["weights"]["data"] = record["routing"]["weights"]["data"][:-3]


def drop_a_token(record: dict) -> None:
    for key in ("ids", "texts", "phases", "requests"):
        record["tokens"][key].pop()


@pytest.mark.parametrize(("change", "expected"), [
    (lambda r: r.update(version=2), "version 2 conversation and this mixtui reads version 1"),
    (lambda r: r.update(format="something-else"), "not a mixtui conversation"),
    (lambda r: r.pop("format"), "not a mixtui conversation"),
    (truncate_probs, "damaged mixtui conversation (routing.probs holds"),
    (cut_mid_base64, "damaged mixtui conversation (routing.weights data is not valid base64"),
    (drop_a_token, "do not fit 15 tokens"),
    (lambda r: r["tokens"]["ids"].pop(), "tokens has 15 ids"),
    (lambda r: r["stats"].pop(), "2 answers but 1 stats"),
    (lambda r: r["turns"].append(["system", "x"]), "turn 4 is not"),
    (lambda r: r["stats"][0].pop("ttft_s"), "stats[0].ttft_s is missing"),
    (lambda r: r["model_info"].update(num_experts=16), "its model 2 x 16"),
    (lambda r: r["tokens"]["requests"].reverse(), "tokens.requests must rise"),
    (lambda r: r.update(version="1"), "its version is '1'"),
    (lambda r: r["routing"]["experts"].update(dtype="float32"), "routing.experts has dtype"),
])
def test_bad_files_give_one_sentence(tmp_path: Path, change: Callable[[dict], object],
                                     expected: str) -> None:
    path = write_bad(tmp_path, change)
    with pytest.raises(ConversationError) as err:
        Conversation.load(path)
    message = str(err.value)
    assert isinstance(err.value, MixtuiError)
    assert expected in message and str(path) in message
    assert message.endswith(".") and "\n" not in message and ". " not in message


@pytest.mark.parametrize(("content", "expected"), [
    (b"this is not json", "not a mixtui conversation (it is not JSON)"),
    (b'{"format": "mixtui-conversation", "version": 1, "mod', "it is not JSON"),
    (b"\xff\xfe binary", "it is not JSON"),
    (b"[1, 2, 3]", "not a mixtui conversation"),
    (b'{"type": "header", "format": "mixtui-trace", "version": 1}\n{"type": "token"}\n',
     "is a mixtui trace, not a conversation"),
])
def test_files_that_are_not_conversations(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(ConversationError) as err:
        Conversation.load(path)
    assert expected in str(err.value) and str(path) in str(err.value)
    assert str(err.value).endswith(".")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConversationError, match="Cannot read"):
        Conversation.load(tmp_path / "nowhere.json")


# -- trace export ----------------------------------------------------------------------------------
def test_export_trace_reads_back(tmp_path: Path) -> None:
    conv, _ = two_answers()
    feed = Feed(conv)
    feed.request(30, "unanswered", [80, 81], [82], finish=False)  # no summary for this one
    path = tmp_path / "t.jsonl"
    conv.export_trace(path, model_info())
    header, tokens, summary = read_trace(path)
    assert header["model"] == "tiny" and header["num_experts"] == E
    assert len(tokens) == len(conv)
    r = conv.routing()
    assert r is not None
    for i, rec in enumerate(tokens):
        assert (rec["id"], rec["text"], rec["phase"]) == (conv.ids[i], conv.texts[i],
                                                          conv.phases[i])
        assert rec["experts"] == r.experts[i].tolist()
        np.testing.assert_allclose(rec["weights"], r.weights[i], atol=5e-7)
        np.testing.assert_allclose(rec["probs"], r.probs[i], atol=5e-7)
    # One summary after each answer's tokens; read_trace hands out the last one.
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    kinds = [rec["type"] for rec in lines]
    assert kinds == ["header"] + ["token"] * 10 + ["summary"] + ["token"] * 6 + ["summary"] + [
        "token"] * 3
    first = lines[11]
    assert first["token_ids"] == [10, 11, 12, 13, 2] and first["text"] == conv.turns[1][1]
    assert first["generation_tps"] == conv.stats[0].generation_tps
    assert summary is not None and summary["token_ids"] == [20, 21, 22]
    assert summary["finish_reason"] == "stop" and summary["text"] == "<20><21><22>"


def test_export_trace_with_capture_off_and_k_change(tmp_path: Path) -> None:
    conv = Conversation("tiny", model_info())
    feed = Feed(conv)
    feed.request(1, "a", [1, 2], [3], capture=False)
    feed.request(2, "b", [4], [5, 6], k=3)
    conv.export_trace(tmp_path / "t.jsonl")  # the conversation's own info
    _, tokens, summary = read_trace(tmp_path / "t.jsonl")
    assert [len(t["experts"]) for t in tokens] == [0, 0, 0, L, L, L]
    assert [len(t["experts"][0]) for t in tokens[3:]] == [3, 3, 3]
    assert summary is not None and summary["token_ids"] == [5, 6]


def test_export_trace_of_a_dense_conversation(tmp_path: Path) -> None:
    conv, _ = two_answers(moe=False)
    conv.export_trace(tmp_path / "t.jsonl", DENSE)
    header, tokens, _ = read_trace(tmp_path / "t.jsonl")
    assert header["moe_layers"] == [] and len(tokens) == len(conv)
    assert all(t["experts"] == [] == t["probs"] for t in tokens)


def test_export_trace_needs_matching_info(tmp_path: Path) -> None:
    conv, _ = two_answers()
    with pytest.raises(ConversationError, match="export it with the model"):
        conv.export_trace(tmp_path / "t.jsonl", model_info(experts=8))
    bare = Conversation("tiny")
    with pytest.raises(ConversationError, match="details"):
        bare.export_trace(tmp_path / "t.jsonl")
    assert not (tmp_path / "t.jsonl").exists()
