"""A home copied whole as one moment (the ledger's rows and the store's files together), and such a copy made
into a new home: what `agentmem backup` and `agentmem restore` run.

    BACKUP/backup.json       what was copied: from where, when, rows per table, the base model
    BACKUP/ledger.sqlite     the ledger's rows, in SQLite whatever database the home's ledger is in
    BACKUP/store/, sleep/    the home's edits, versions, adapters and night reports

Caches, logs and staging folders are left out: they are rebuilt, or belong to the processes that made them.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from .atomic import atomic_path, fsync_tree, replace
from .layout import Layout
from .ledger import Ledger

MANIFEST = "backup.json"


def _copied(layout: Layout) -> list[Path]:
    """The home's folders a backup holds: edits, versions and adapters, and the night reports."""
    return [layout.store, layout.sleep_reports]


def _copy_folders(src: Layout, dst: Layout, copy=shutil.copytree, **options) -> None:
    """Each of the home's backed-up folders that `src` holds, copied (or moved with `replace`) to its place in
    `dst`."""
    for folder, to in zip(_copied(src), _copied(dst)):
        if folder.is_dir():
            copy(folder, to, **options)


def _skip(layout: Layout):
    """staging: a writer's files before its commit; dot-names: files and folders being written (atomic_path,
    nights)."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        return {n for n in names if n.startswith(".") or Path(folder) / n == layout.staging}
    return ignore


def write(ledger: Ledger, layout: Layout, dest: Path) -> dict:
    """Copy the home into the new folder `dest`; call it while no writer can commit (every writer's lock held),
    so that the files and the rows are of one moment. The folder appears whole or not at all."""
    dest = Path(dest)
    if dest.exists():
        raise ValueError(f"{dest} exists: a backup goes into a new folder")
    with atomic_path(dest, directory=True) as tmp:
        _copy_folders(layout, Layout(tmp), ignore=_skip(layout))
        copy = Ledger.open(Layout(tmp))
        try:
            rows = ledger.copy_into(copy)
        finally:
            copy.close()
        manifest = {"home": str(layout.home), "created": time.time(), "rows": rows,
                    "base_model": ledger.base_model()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def restore(src: Path, layout: Layout, database_url: str | None = None) -> dict:
    """Make the backup at `src` into the new home `layout` (its ledger at `database_url`, else its SQLite
    file). A home that holds a memory already is refused; the backup itself is only read."""
    src = Path(src)
    backup = Layout(src)
    if not (src / MANIFEST).is_file() or not backup.ledger.is_file():
        raise ValueError(f"{src} is not an agentmem backup (no {MANIFEST} and {backup.ledger.name})")
    taken = [f.name for f in _copied(layout) if f.exists() and any(f.iterdir())]
    if taken:
        raise ValueError(f"{layout.home} already holds a memory ({', '.join(taken)}): restore into a new home")
    manifest = json.loads((src / MANIFEST).read_text())
    layout.home.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".restore-", dir=layout.home))
    try:
        staged = Layout(work)
        # opening a ledger brings it to the newest revision: a copy of the backup's, so the backup stays as it is
        shutil.copy2(backup.ledger, staged.ledger)
        _copy_folders(backup, staged)
        fsync_tree(work)
        source, target = Ledger.open(staged), Ledger.open(layout, database_url)
        try:
            rows = source.copy_into(target)
        finally:
            source.close()
            target.close()
        _copy_folders(staged, layout, copy=replace)  # over an empty folder at most, as checked above
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"from": str(src), "taken": manifest["created"], "rows": rows}
