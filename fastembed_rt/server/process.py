"""`fastembed-rt serve` as a child process: started, waited for until it says it is ready, stopped."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import threading
import time

_READY = re.compile(r"serving (?P<name>.+) on (?P<url>http://\S+)")


class ServerProcess:
    def __init__(self, args: list[str], timeout: float = 120.0, env: dict | None = None):
        """Runs `fastembed-rt serve --port 0 ARGS...` and waits for its ready line (which names the port)."""
        command = [sys.executable, "-m", "fastembed_rt.cli", "serve", "--port", "0", *args]
        self.proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})  # fmt: skip
        self.output: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = self.proc.stdout.readline() if ready else ""
            if line:
                self.output.append(line)
                if match := _READY.search(line):
                    self.url, self.name = match["url"], match["name"]
                    # Keep reading its output, so that a chatty server never blocks on a full pipe.
                    self._reader = threading.Thread(target=self._drain, daemon=True)
                    self._reader.start()
                    return
                continue
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError("fastembed-rt serve did not start:\n" + "".join(self.output) + self.proc.stdout.read())

    def _drain(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Sends `sig` and waits for the exit code (killing it after `timeout`)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
