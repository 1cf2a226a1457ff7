"""What is built once per machine (the converted model, the covariance) is built once when processes start
together on a fresh machine, and none of them reads it half-built."""

import multiprocessing as mp
import time
from pathlib import Path

from agentmem.storage.atomic import atomic_path, build_once


def _start(dest: str, log: str) -> str:
    dest, log = Path(dest), Path(log)

    def build():
        with open(log, "a") as fh:
            fh.write("built\n")
        time.sleep(0.5)  # the others arrive while this one is still building
        with atomic_path(dest, directory=True) as tmp:
            (tmp / "weights").write_text("w")

    build_once(dest, lambda: (dest / "weights").exists(), build)
    return (dest / "weights").read_text()


def test_processes_starting_at_once_build_it_once_and_all_read_it(tmp_path):
    dest, log = tmp_path / "cache" / "model", tmp_path / "log"
    with mp.get_context("fork").Pool(4) as pool:
        read = pool.starmap(_start, [(str(dest), str(log))] * 4)
    assert read == ["w"] * 4
    assert log.read_text() == "built\n"


def test_a_failed_build_leaves_nothing_and_the_next_start_builds_it(tmp_path):
    dest = tmp_path / "model"

    def broken():
        with atomic_path(dest, directory=True) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed")

    try:
        build_once(dest, dest.exists, broken)
    except RuntimeError:
        pass
    assert not dest.exists()
    assert _start(str(dest), str(tmp_path / "log")) == "w"
