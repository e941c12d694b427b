"""The event link's wire format: records and traces in frames, and back."""

from __future__ import annotations

import orjson

from edge.event_link import MAX_FRAME, decode_batch, encode_batch
from edge.events import Trace, TraceStep


def _trace() -> Trace:
    return Trace(
        ray_id="a9b1109481fadf04",
        steps=[
            TraceStep("sni", "zone", {"sni": "spectrum.example.com"}, 0.0),
            TraceStep("dns", "answered", {"addresses": ["127.0.20.249"], "view": "internal"}, 0.12),
        ],
    )


def test_round_trip_keeps_records_and_traces() -> None:
    records = [("http_requests", {"RayID": "a9b1109481fadf04", "EdgeResponseStatus": 200}),
               ("spectrum_events", {"Event": "connect", "ClientPort": 40475})]
    frames = encode_batch(records, [_trace().as_json()])
    assert len(frames) == 1
    assert frames[0] == (
        b'{"r":[["http_requests",{"RayID":"a9b1109481fadf04","EdgeResponseStatus":200}],'
        b'["spectrum_events",{"Event":"connect","ClientPort":40475}]],'
        b'"t":[{"ray_id":"a9b1109481fadf04","steps":[{"stage":"sni","decision":"zone","at_ms":0.0,'
        b'"sni":"spectrum.example.com"},{"stage":"dns","decision":"answered","at_ms":0.12,'
        b'"addresses":["127.0.20.249"],"view":"internal"}]}]}'
    )
    decoded = decode_batch(frames[0])
    assert decoded is not None
    got_records, got_traces = decoded
    assert got_records == records
    assert [t.as_json() for t in got_traces] == [_trace().as_json()]


def test_a_large_batch_is_split_under_the_frame_limit_in_order() -> None:
    records = [("dns_queries", {"n": i, "pad": "x" * 300}) for i in range(1000)]
    frames = encode_batch(records, [])
    assert len(frames) > 1
    assert all(len(d) <= MAX_FRAME for d in frames)
    back = []
    for d in frames:
        decoded = decode_batch(d)
        assert decoded is not None
        back += decoded[0]
    assert back == records


def test_an_item_too_large_for_one_frame_is_left_out() -> None:
    records = [("http_requests", {"big": "x" * MAX_FRAME}), ("http_requests", {"small": 1})]
    frames = encode_batch(records, [])
    decoded = decode_batch(frames[0])
    assert decoded is not None and decoded[0] == [("http_requests", {"small": 1})]


def test_nothing_to_send_is_no_frame() -> None:
    assert encode_batch([], []) == []


def test_foreign_or_malformed_frames_are_ignored() -> None:
    assert decode_batch(b"\x00\xffgarbage") is None
    assert decode_batch(b"[1,2]") is None
    decoded = decode_batch(orjson.dumps({"r": [["ok", {"a": 1}], ["no"], [1, {}], "x"], "t": [{"no": 1}, 5]}))
    assert decoded == ([("ok", {"a": 1})], [])
