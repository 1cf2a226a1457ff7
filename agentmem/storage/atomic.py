"""Atomic writes: build the new file or folder beside its destination, fsync, rename.

A crash at any instant leaves either the old content or the new, never a mix.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from filelock import FileLock
from safetensors import SafetensorError
from safetensors.torch import save_file


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync a file, or a folder and everything in it."""
    if path.is_dir():
        for child in path.iterdir():
            fsync_tree(child)
        fsync_dir(path)
    else:
        with open(path, "rb+") as fh:
            os.fsync(fh.fileno())


def replace(src: Path, dest: Path) -> None:
    """Move the finished (fsynced) file or folder `src` onto `dest` by rename, and fsync the folder holding it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir() and dest.exists():
        # A folder cannot be renamed over a non-empty one: move the old aside first.
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dest, old)
        os.rename(src, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dest)
    fsync_dir(dest.parent)


@contextlib.contextmanager
def atomic_path(dest: Path, directory: bool = False):
    """Yield a temporary path beside `dest`; on success it is fsynced and renamed onto `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        fsync_tree(tmp)
        replace(tmp, dest)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def build_once(dest: Path, built, build) -> None:
    """Run `build()` unless `built()`, holding a lock beside `dest`: processes that start at once on a fresh
    machine build it once, and none reads a folder while another renames its copy over it."""
    if built():
        return
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(dest.parent / f".{dest.name}.lock"):
        if not built():
            build()


def write_json(dest: Path, obj) -> None:
    with atomic_path(dest) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))


def save_tensors(tensors: dict, path: Path) -> None:
    """safetensors' save_file, a failed write raised as the OSError it is (safetensors raises its own type, which
    a caller would take for bad data: a full disk would fail a fact for good instead of being retried)."""
    try:
        save_file(tensors, str(path))
    except SafetensorError as e:
        code = re.search(r"os error (\d+)", str(e))
        if code is None:
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from e
