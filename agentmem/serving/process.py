"""Run `agentmem serve` as a child process: start it, wait until it answers, stop it as a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .engines import free_port
from ..storage.layout import Layout
from .client import ServerClient, ServerError


class ServeProcess:
    def __init__(self, home: Path, engine: str = "auto", port: int | None = None, model: str | None = None,
                 env: dict[str, str] | None = None, args: list[str] = ()):
        self.home, self.engine, self.model = Path(home), engine, model
        self.args = list(args)  # more `agentmem serve` options
        self.env = env or {}  # AGENTMEM_* settings for this server only
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Layout(self.home).server_logs / f"serve-{engine}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 600.0) -> None:
        cmd = [sys.executable, "-m", "agentmem", "serve", "--home", str(self.home), "--port", str(self.port),
               "--engine", self.engine, *(["--model", self.model] if self.model else []), *self.args]
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        client = ServerClient(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"agentmem serve exited with status {self.proc.returncode}:\n{self.tail()}")
                try:
                    client.live_version()
                    return
                except ServerError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"agentmem serve did not answer within {timeout:.0f} s:\n{self.tail()}")
                    time.sleep(0.25)
        finally:
            client.close()

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
