"""The output directory of `flowlens batch`: Parquet datasets, the resume ledger, atomic writes.

    OUTDIR/
      connections/date=YYYY-MM-DD/<capture_id>.parquet   one file per capture (hive partitions)
      anomalies/date=YYYY-MM-DD/<capture_id>.parquet
      summary.parquet, summary.json                      one row per capture
      report.html                                        the aggregate report
      _state/lock                                        held while a batch writes here
      _state/tasks/<task_id>.json                        the ledger: one entry per finished task
      _state/probes/<capture_id>.json                    cached time spans (--merge-consecutive)
      _state/rotation/<first capture_id>/<i>.records     a rotation set's checkpoint after
      _state/rotation/<first capture_id>/<i>.state       member i (--merge-consecutive)

Every file is written to a dot-named temporary in its own directory, fsynced and renamed over
its final name, so readers and a killed run never see half a file. The ledger is the truth: a
task's Parquet files are written before its ledger entry, and at the start of every run any
dataset file that no ledger entry names (left by a run killed in between) is deleted, so a
re-run never counts a capture twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import pickle
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import FlowlensError
from .task import SUMMARY_SCHEMA, Checkpoint, Probe, Resume, TaskResult

__all__ = ["Store", "atomic_write", "DATASETS"]

#: dataset directories under OUTDIR
DATASETS = ("connections", "anomalies")

_TMP_SUFFIX = ".tmp"


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable) -> None:
    """Call `write(file)` on a temporary beside `path`, fsync it, rename it over `path`.

    The temporary's name starts with a dot and ends in `.tmp`, so pyarrow, pandas, DuckDB and
    Spark globs (`*.parquet`, hidden files skipped) never pick it up.
    """
    folder, name = os.path.split(path)
    os.makedirs(folder or ".", exist_ok=True)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}{_TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder or ".")


def _write_json(path: str, obj, sort_keys: bool = True) -> None:
    data = json.dumps(obj, indent=1, sort_keys=sort_keys, default=str).encode() + b"\n"
    atomic_write(path, lambda f: f.write(data))


def _load(path: str) -> object:
    """A pickle this store wrote (`_state/` is the user's own output directory), or None."""
    try:
        with open(path, "rb") as f:
            return pickle.load(f)
    except Exception:  # noqa: BLE001 - missing, cut short, or from another version: unusable
        return None


def _same_file(recorded: tuple, path: str, key: tuple | None) -> bool:
    """Is the member recorded as (path, size, mtime_ns, blake2b) the file `key` describes?"""
    if key is None or recorded[0] != path:
        return False
    if key[0] == "blake2b":
        return recorded[3] is not None and recorded[3] == key[1]
    return key[0] is not None and (recorded[1], recorded[2]) == tuple(key)


class Store:
    """One OUTDIR. Use as a context manager: it holds the directory's lock while open."""

    def __init__(self, outdir: str) -> None:
        self.outdir = os.path.abspath(outdir)
        self.state = os.path.join(self.outdir, "_state")
        self.tasks_dir = os.path.join(self.state, "tasks")
        self.probes_dir = os.path.join(self.state, "probes")
        self.rotation_dir = os.path.join(self.state, "rotation")
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ lock
    def __enter__(self) -> Store:
        try:
            for d in (self.outdir, self.tasks_dir, self.probes_dir):
                os.makedirs(d, exist_ok=True)
            fd = os.open(os.path.join(self.state, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise FlowlensError(
                f"{self.outdir}: cannot write here ({exc.strerror or exc})"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise FlowlensError(
                    f"{self.outdir}: another flowlens batch is writing here"
                ) from None
            raise FlowlensError(f"{self.outdir}: cannot lock ({exc.strerror or exc})") from exc
        self._lock_fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # ------------------------------------------------------------------ ledger
    def entries(self) -> dict[str, dict]:
        """The ledger: task_id -> entry (members, status, outputs, captures, options)."""
        out = {}
        for name in sorted(os.listdir(self.tasks_dir)):
            if name.startswith(".") or not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.tasks_dir, name), "rb") as f:
                    entry = json.load(f)
            except (OSError, ValueError):
                continue  # unreadable entry: the task is simply redone
            out[entry.get("task_id", name[:-5])] = entry
        return out

    def commit(self, result: TaskResult, options_key: str) -> dict:
        """Write a finished task's Parquet files, then its ledger entry; returns the entry."""
        outputs = []
        dates = {c["capture_id"]: c["date"] for c in result.captures}
        for dataset, tables in (
            ("connections", result.connections),
            ("anomalies", result.anomalies),
        ):
            for cid, table in sorted(tables.items()):
                rel = os.path.join(dataset, f"date={dates.get(cid) or 'unknown'}", f"{cid}.parquet")
                atomic_write(
                    os.path.join(self.outdir, rel), lambda f, t=table: pq.write_table(t, f)
                )
                outputs.append(rel)
        entry = {
            "task_id": result.task_id,
            "status": "failed" if result.failed else "ok",
            "options": options_key,
            "outputs": outputs,
            "captures": result.captures,
        }
        self.save_entry(entry)
        return entry

    def save_entry(self, entry: dict) -> None:
        _write_json(self._entry_path(entry["task_id"]), entry)

    def drop(self, entry: dict) -> None:
        """Forget a task: its ledger entry first (so a kill leaves only orphans), then its files."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._entry_path(entry["task_id"]))
        for rel in entry.get("outputs", ()):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.outdir, rel))

    def _entry_path(self, task_id: str) -> str:
        return os.path.join(self.tasks_dir, f"{task_id}.json")

    def clean(self, entries: dict[str, dict]) -> int:
        """Delete temporaries and every dataset file no ledger entry names; returns how many."""
        known = {rel for e in entries.values() for rel in e.get("outputs", ())}
        removed = 0
        for top in [os.path.join(self.outdir, d) for d in DATASETS] + [self.state]:
            for folder, _dirs, files in os.walk(top, topdown=False):
                for name in files:
                    path = os.path.join(folder, name)
                    rel = os.path.relpath(path, self.outdir)
                    stray = name.startswith(".") and name.endswith(_TMP_SUFFIX)
                    orphan = top != self.state and name.endswith(".parquet") and rel not in known
                    if stray or orphan:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)
                            removed += 1
                if folder != top and top != self.state:
                    with contextlib.suppress(OSError):
                        os.rmdir(folder)  # only succeeds when empty: a partition with no files
        for name in os.listdir(self.outdir):
            if name.startswith(".") and name.endswith(_TMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.outdir, name))
                    removed += 1
        return removed

    # ------------------------------------------------------------------ probe cache
    def cached_probe(self, capture_id: str, size: int | None, mtime_ns: int | None) -> Probe | None:
        try:
            with open(os.path.join(self.probes_dir, f"{capture_id}.json"), "rb") as f:
                d = json.load(f)
        except (OSError, ValueError):
            return None
        if size is None or d.get("size") != size or d.get("mtime_ns") != mtime_ns or d.get("error"):
            return None
        d["linktypes"] = tuple(d.get("linktypes") or ())
        try:
            return Probe(**d)
        except TypeError:
            return None

    def save_probe(self, capture_id: str, probe: Probe) -> None:
        if probe.error is None:
            _write_json(
                os.path.join(self.probes_dir, f"{capture_id}.json"), dataclasses.asdict(probe)
            )

    # ------------------------------------------------------------------ rotation checkpoints
    def _set_dir(self, set_id: str) -> str:
        return os.path.join(self.rotation_dir, set_id)

    def resume(
        self, set_id: str, stamp: str, members: Sequence[str], keys: dict[str, tuple]
    ) -> Resume | None:
        """The checkpoints a task over `members` can go on from, or None (read them all).

        The checkpoints of members 0..i are usable while each was made with this `stamp` and
        records the same leading members with the same resume keys as `keys[path]` has now
        ((size, mtime_ns), or ("blake2b", digest) with --verify); the task goes on from the
        last such checkpoint that kept its state. Anything unreadable counts as missing.
        """
        folder = self._set_dir(set_id)
        chain: list[Checkpoint] = []
        for i in range(len(members)):
            ck = _load(os.path.join(folder, f"{i}.records"))
            if not isinstance(ck, Checkpoint) or ck.stamp != stamp or ck.index != i:
                break
            if len(ck.keys) != i + 1 or any(
                not _same_file(k, members[j], keys.get(members[j])) for j, k in enumerate(ck.keys)
            ):
                break
            chain.append(ck)
        while chain:
            state = _load(os.path.join(folder, f"{len(chain) - 1}.state"))
            last = chain[-1]
            if isinstance(state, tuple) and len(state) == 3 and state[:2] == (stamp, last.keys):
                chain[-1] = dataclasses.replace(last, state=state[2])
                return Resume(tuple(chain))
            chain.pop()
        return None

    def drop_checkpoints(self, set_id: str) -> None:
        """Forget a set's checkpoints (its next run reads every file)."""
        folder = self._set_dir(set_id)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(folder):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
            with contextlib.suppress(OSError):
                os.rmdir(folder)

    def save_checkpoints(self, set_id: str, result: TaskResult) -> None:
        """Keep a finished set's new checkpoints (`result.checkpoints`): the ones after the
        members it went on from stay, every other is replaced or removed, and states are kept
        for the last two members only."""
        folder = self._set_dir(set_id)
        os.makedirs(folder, exist_ok=True)
        new = {c.index: c for c in result.checkpoints}
        last = max(new, default=result.resumed - 1)
        for name in os.listdir(folder):
            stem, _, kind = name.partition(".")
            if not stem.isdigit() or kind not in ("records", "state"):
                continue
            i = int(stem)
            if i >= result.resumed or i > last or (kind == "state" and i < last - 1):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(folder, name))
        for i, ck in sorted(new.items()):
            if ck.state is not None:
                blob = pickle.dumps((ck.stamp, ck.keys, ck.state), protocol=pickle.HIGHEST_PROTOCOL)
                atomic_write(os.path.join(folder, f"{i}.state"), lambda f, b=blob: f.write(b))
            rec = pickle.dumps(dataclasses.replace(ck, state=None), pickle.HIGHEST_PROTOCOL)
            atomic_write(os.path.join(folder, f"{i}.records"), lambda f, b=rec: f.write(b))

    # ------------------------------------------------------------------ summary
    def write_summary(self, entries: dict[str, dict], extra: dict) -> list[dict]:
        """summary.parquet and summary.json from the ledger; returns the rows, by path."""
        names = SUMMARY_SCHEMA.names
        rows = sorted(
            (
                {name: c.get(name) for name in names}
                for e in entries.values()
                for c in e.get("captures", ())
            ),
            key=lambda r: r["capture_path"],
        )
        table = pa.Table.from_pylist(
            [
                {**r, "anomalies_by_kind": list((r["anomalies_by_kind"] or {}).items()) or None}
                for r in rows
            ],
            schema=SUMMARY_SCHEMA,
        )
        atomic_write(
            os.path.join(self.outdir, "summary.parquet"), lambda f: pq.write_table(table, f)
        )
        ok = [r for r in rows if r["status"] == "ok"]
        kinds: dict[str, int] = {}
        for r in ok:
            for k, n in (r["anomalies_by_kind"] or {}).items():
                kinds[k] = kinds.get(k, 0) + n
        totals = {
            "captures": len(rows),
            "ok": len(ok),
            "failed": len(rows) - len(ok),
            "packets": sum(r["packets"] or 0 for r in ok),
            "connections": sum(r["connections"] or 0 for r in ok),
            "anomalies": sum(r["anomalies"] or 0 for r in ok),
            "anomalies_by_kind": dict(sorted(kinds.items())),
        }
        summary = {**extra, "totals": totals, "captures": rows}
        _write_json(os.path.join(self.outdir, "summary.json"), summary, sort_keys=False)
        return rows

    def write_text(self, name: str, text: str) -> str:
        path = os.path.join(self.outdir, name)
        data = text.encode()
        atomic_write(path, lambda f: f.write(data))
        return path
