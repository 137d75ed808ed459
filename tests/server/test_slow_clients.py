"""Clients that hold sockets open without finishing their requests (slowloris): they get 408 and are
disconnected, and never take the capacity valid requests need. Real sockets on loopback."""

import socket
import time

import pytest

from fastembed_rt.server.process import ServerProcess

from .conftest import get, post

TIMEOUT = 3.0


@pytest.fixture(scope="module")
def strict_server(minilm_path):
    args = ["--model", str(minilm_path), "--max-concurrent-requests", "5", "--max-connections", "16",
            "--header-timeout", str(TIMEOUT), "--body-timeout", str(TIMEOUT)]  # fmt: skip
    with ServerProcess(args) as process:
        yield process


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def stalled_body(url: str) -> socket.socket:
    """Headers announcing 20 bytes of body, then only 3 of them."""
    sock = connect(url)
    sock.sendall(b"POST /embed HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n{\"i")
    return sock


def stalled_headers(url: str) -> socket.socket:
    sock = connect(url)
    sock.sendall(b"POST /embed HTTP/1.1\r\nhost: x\r\n")
    return sock


def answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def test_stalled_bodies_do_not_take_the_request_slots(strict_server):
    slow = [stalled_body(strict_server.url) for _ in range(5)]
    time.sleep(0.3)  # every stalled request has sent its headers
    for _ in range(3):  # before: 429 while the five sockets stay open
        status, body, _ = post(strict_server.url, "/embed", {"inputs": ["a valid request"]})
        assert status == 200 and len(body[0]) == 384
    for sock in slow:  # answered while the stalled requests were still waiting for their bodies
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(1)
        sock.setblocking(True)
    for sock in slow:
        reply = answer(sock)
        assert reply.startswith(b"HTTP/1.1 408 ")
        assert b"request body not received within 3 s (--body-timeout): 3 bytes came" in reply
        assert b"connection: close" in reply.lower()


def test_stalled_and_silent_headers_are_cut_off(strict_server):
    trickle, silent = stalled_headers(strict_server.url), connect(strict_server.url)
    started = time.monotonic()
    for sock in (trickle, silent):
        reply = answer(sock)
        assert reply.startswith(b"HTTP/1.1 408 ") and b"request headers not received in time" in reply
    assert TIMEOUT - 0.5 < time.monotonic() - started < TIMEOUT + 5
    assert get(strict_server.url, "/health")[0] == 200


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(strict_server):
    held = [stalled_body(strict_server.url) for _ in range(16)]
    time.sleep(0.3)
    status, _, _ = post(strict_server.url, "/embed", {"inputs": ["one too many"]})
    assert status == 503
    for sock in held:
        assert answer(sock).startswith(b"HTTP/1.1 408 ")
    status, body, _ = post(strict_server.url, "/embed", {"inputs": ["after the flood"]})
    assert status == 200 and len(body[0]) == 384


def test_timeouts_must_be_positive():
    from fastembed_rt.server import ServerConfig

    for field in ("header_timeout", "body_timeout", "max_connections"):
        with pytest.raises(ValueError, match=field.replace("_", "-")):
            ServerConfig(**{field: 0})
