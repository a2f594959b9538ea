"""Running the real `addon` command in a subprocess, as an operator would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from tests.support.waiting import wait_for

ADDON = str(Path(sys.executable).with_name("addon"))


def addon_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADDON_", "OUTGOING_", "DATABASE_URL"))}
    env.update(values)
    return env


class CommandProcess:
    """A command in its own process group (so that stopping it stops its children too), its output captured to a
    file. The tests and the benchmarks (`bench.common.Process`) start every add-on process through it."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log_path: Path, name: str = "") -> None:
        self.name = name or Path(argv[0]).name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pid = self.proc.pid

    def wait_healthy(self, url: str, timeout: float = 60) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {self.output()[-2000:]}")
            try:
                return requests.get(f"{url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, timeout=timeout, interval=0.1, message=f"{self.name} to answer /healthz")

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            code = self.proc.wait(10)
        self._log.close()
        return code

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()


class AddonProcess(CommandProcess):
    """`addon serve` or `addon worker` in its own process group, its output captured to a file."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, log_path: Path, *,
                 executable: str = ADDON) -> None:
        super().__init__([executable, *args], env, cwd, log_path, name="addon")
