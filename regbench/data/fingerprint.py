"""Fingerprints of a user's data: which version of a table, .npz file or image folder a run read.

A fingerprint is a content hash (sha256) of the files a `dataset=table` (`dataset.path` and
`dataset.test_path`), `dataset=arrays` (the .npz) or `dataset=image_folder` (its images) run
reads. It is part of the run's identity (regbench.results.identity): a run on an edited file is
another run, not one already done, not one whose checkpoint may be continued, not another seed
of the same configuration in a report. The bundled datasets have none.

Hashing a large file on every rerun would cost as much as reading it, so each digest is cached
in regbench's cache folder (regbench.data.files.cache_dir()/fingerprints, never beside the data,
which may be read-only), one small JSON file per path, keyed on the absolute path and a stamp
of the file: its size, modification time and status-change time (st_ctime, which no user tool
can set back), in nanoseconds; for an image folder, the stamps of all its images. While the
stamp matches, the cached digest is trusted; when it does not, the files are read and hashed
again. The known limit: a file rewritten with the same size and the same mtime and ctime (only
possible by setting the clock back) keeps its cached digest. `REGBENCH_REHASH=1` in the
environment ignores the cache and hashes every file again (and refreshes the cache).

Imported before torch (by the skip decision of `regbench run` and the stacked launcher): only
the standard library here.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from regbench.data import files

REHASH_ENV = "REGBENCH_REHASH"
SHORT = 8  # hex digits of a digest shown to users (git shows 7)
_CHUNK = 1 << 20


def of_params(params: dict[str, Any]) -> dict[str, Any] | None:
    """The fingerprint of the data a run's flattened config reads, None for a bundled dataset.

    Returns:
        `{"sha256": digest, "files": {"dataset.path": {"path": absolute path, "sha256": its
        digest}, ...}}`. With one file, `sha256` is that file's own (what `sha256sum` prints);
        with a table's test file too, the sha256 of the lines `key=digest`. A file that cannot be
        read has the digest `unreadable (reason)`: no finished run matches it, and the run
        itself fails on it with its own message.
    """
    name = params.get("dataset.name")
    if name not in files.OWN_DATA or not params.get("dataset.path"):
        return None
    keys = ("dataset.path", "dataset.test_path") if name == "table" else ("dataset.path",)
    entries = {}
    for key in keys:
        if params.get(key):
            path = files.resolve(str(params[key]))
            entries[key] = {"path": str(path), "sha256": digest(path)}
    return {"sha256": _combined(entries), "files": entries}


def now(record: dict[str, Any]) -> str | None:
    """The digest the files of a recorded fingerprint (a result.json's `data_fingerprint`) have
    now, as `of_params` would compute it; None when one of them is gone or unreadable."""
    try:
        entries = {key: {"sha256": digest(Path(entry["path"]))} for key, entry in record["files"].items()}
    except (KeyError, TypeError, AttributeError):
        return None
    if any(e["sha256"].startswith("unreadable") for e in entries.values()):
        return None
    return _combined(entries)


def _combined(entries: dict[str, dict[str, str]]) -> str:
    if len(entries) == 1:
        return next(iter(entries.values()))["sha256"]
    return hashlib.sha256("".join(f"{k}={e['sha256']}\n" for k, e in entries.items()).encode()).hexdigest()


def digest(path: Path, rehash: bool | None = None) -> str:
    """The sha256 of a file's content, or of an image folder's images (their paths relative to
    the folder and their contents), from the cache while the stamp matches.

    Args:
        path: an absolute path.
        rehash: hash again even when the cache matches; by default when REGBENCH_REHASH=1.
    """
    if rehash is None:
        rehash = os.environ.get(REHASH_ENV, "") not in ("", "0")
    try:
        images = _images(path) if path.is_dir() else None
        stamp = _stamp(path, images)
    except OSError as e:
        return f"unreadable ({e.strerror or type(e).__name__})"
    entry = _cache_file(path)
    if not rehash:
        try:
            cached = json.loads(entry.read_text())
            if cached.get("path") == str(path) and cached.get("stamp") == stamp:
                return str(cached["sha256"])
        except (OSError, ValueError, AttributeError, KeyError):  # none yet, or a partial or foreign file
            pass
    try:
        value = _hash_folder(path, images) if images is not None else _hash_file(path)
    except OSError as e:
        return f"unreadable ({e.strerror or type(e).__name__})"
    _write_cache(entry, {"path": str(path), "stamp": stamp, "sha256": value})
    return value


def short(value: Any) -> str:
    """`data@1a2b3c4d`: how a version of a user's data is named in reports (`data@unknown` for a
    run recorded before regbench fingerprinted data)."""
    return f"data@{value[:SHORT]}" if isinstance(value, str) and value else "data@unknown"


def _stamp(path: Path, images: list[str] | None) -> str:
    def one(p: Path) -> str:
        st = p.stat()
        return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"

    if images is None:
        return one(path)
    h = hashlib.sha256()
    for rel in images:
        h.update(f"{rel}\0{one(path / rel)}\n".encode())
    return f"folder:{len(images)}:{h.hexdigest()}"


def _images(root: Path) -> list[str]:
    """The image files under `root` (as regbench.data.image_folder reads them: any depth,
    symbolic links followed), relative, in a fixed order."""
    from regbench.data.image_folder import EXTENSIONS

    found = []
    for dirpath, _, names in os.walk(root, followlinks=True):
        found += [os.path.relpath(os.path.join(dirpath, n), root) for n in names if n.lower().endswith(EXTENSIONS)]
    return sorted(Path(p).as_posix() for p in found)


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _hash_folder(root: Path, images: list[str]) -> str:
    # the relative path is hashed too: moving an image to another class's folder changes its label
    h = hashlib.sha256()
    for rel in images:
        h.update(f"{rel}\0{_hash_file(root / rel)}\n".encode())
    return h.hexdigest()


def _cache_file(path: Path) -> Path:
    key = hashlib.sha256(str(path).encode()).hexdigest()[:24]
    return files.cache_dir() / "fingerprints" / f"{key}.json"


def _write_cache(entry: Path, record: dict[str, Any]) -> None:
    """Writes the cache entry whole or not at all; a cache that cannot be written (a read-only
    home) only means hashing again next time."""
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
            os.replace(tmp, entry)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass
