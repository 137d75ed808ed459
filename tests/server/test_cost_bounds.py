"""Work and memory per request are bounded by tokens, not bytes: huge texts with truncation on are read only as
far as the model reads them, /tokenize answers are bounded like /embed's, and memory returns after a burst."""

import time

import numpy as np
import pytest

from fastembed_rt import TruncationWarning

from .conftest import post

HUGE = ("The quick brown fox jumps over the lazy dog. " * 800)[:35000]  # 35 KB, about 9,000 tokens


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024


def test_a_burst_of_huge_truncated_texts_is_embedded_and_its_memory_returned(server, minilm):
    before = rss_mb(server.proc.pid)
    for _ in range(2):  # 100 texts of 35 KB each: 3.5 MB, 25,600 tokens after truncation
        status, body, _ = post(server.url, "/embed", {"inputs": [HUGE] * 100, "truncate": True})
        assert status == 200 and len(body) == 100
    with pytest.warns(TruncationWarning):
        expected = minilm.encode([HUGE])[0]
    assert float(np.min(np.asarray(body) @ expected)) > 0.99999
    deadline = time.monotonic() + 10
    while (after := rss_mb(server.proc.pid)) > before + 150 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after <= before + 150, f"RSS {before:.0f} MB before the burst, {after:.0f} MB after it"


def test_tokenize_is_bounded_like_embed(server, minilm):
    status, body, _ = post(server.url, "/tokenize", {"inputs": ["short", HUGE]})
    assert status == 413 and body["error_type"] == "Validation"
    assert body["error"].startswith("inputs[1] has 35000 characters, more than the model's maximum of 256 tokens")
    status, body, _ = post(server.url, "/tokenize", {"inputs": HUGE, "truncate": True})
    assert status == 200 and len(body[0]) == 256
    assert [t["id"] for t in body[0]] == minilm.spec.tokenizer.encode(HUGE).ids
    status, body, _ = post(server.url, "/tokenize", {"inputs": HUGE + " the end", "truncate": True,
                                                    "truncation_direction": "left"})  # fmt: skip
    assert status == 200 and len(body[0]) == 256
    words = [t for t in body[0] if not t["special"]]
    assert [t["text"] for t in words[-2:]] == ["the", "end"]
    text = HUGE + " the end"
    assert all(text[t["start"] : t["stop"]] == t["text"] for t in words)  # offsets into the whole text
    assert words[-1]["stop"] == len(text)
