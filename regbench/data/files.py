"""A user's data files: where they are, what format they are in, whether they fit in memory,
and where regbench caches what it decoded from them.

Imported by the schema's checks before torch is: nothing heavy at module level.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from regbench import UserInputError

# suffix -> format; a compression suffix after it (.csv.gz) is pandas' to undo
TABLE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                 ".feather": "feather", ".ftr": "feather"}
COMPRESSIONS = (".gz", ".bz2", ".zip", ".xz", ".zst")
OWN_DATA = ("table", "arrays", "image_folder")


def resolve(path: str) -> Path:
    """`path` with `~` expanded, relative to where regbench was started (not to the run folder
    that hydra.job.chdir=true would make current)."""
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(str(Path(path).expanduser())))


def table_format(path: Path) -> str:
    """csv, tsv, parquet or feather, from the file's suffix.

    Raises:
        UserInputError: a suffix regbench does not read.
    """
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    fmt = TABLE_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise UserInputError(f"{path}: unknown table format {path.suffix or '(no suffix)'!r}; give a "
                             f"{', '.join(TABLE_FORMATS)} file (CSV and TSV may be compressed: .csv.gz)")
    return fmt


def path_problems(ds: Any) -> list[str]:
    """The `dataset` node's files for table, arrays and image_folder: present, of a known kind
    (one message each; empty when they are, or for the bundled datasets)."""
    if ds.name not in OWN_DATA:
        return []
    if not ds.path:
        return [f"dataset={ds.name} needs dataset.path=... (the {_WHAT[ds.name]})"]
    out = []
    for key in ("path", "test_path") if ds.name == "table" else ("path",):
        value = ds.get(key)
        if not value:
            continue
        path = resolve(value)
        wants_folder = ds.name == "image_folder"
        if not path.exists():
            out.append(f"dataset.{key}={value}: {path} does not exist; give the path of your {_WHAT[ds.name]}")
        elif wants_folder and not path.is_dir():
            out.append(f"dataset.{key}={value}: {path} is a file; give the folder that holds one subfolder of "
                       "images per class (or train/ and test/ subfolders)")
        elif not wants_folder and not path.is_file():
            out.append(f"dataset.{key}={value}: {path} is a folder; give the {_WHAT[ds.name]} itself")
        elif ds.name == "table":
            try:
                table_format(path)
            except UserInputError as e:
                out.append(str(e))
        elif ds.name == "arrays" and path.suffix.lower() != ".npz":
            out.append(f"dataset.path={value}: {path} is not an .npz file; save your arrays with "
                       "numpy.savez(path, x=..., y=...) (optionally x_test=..., y_test=...)")
    return out


_WHAT = {"table": "CSV, TSV, Parquet or Feather file", "arrays": ".npz file", "image_folder": "image folder"}


def available_memory(device: Any = None) -> int | None:
    """Bytes free for new tensors on `device` (a torch.device; host memory when None or CPU),
    None when it cannot be told."""
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(n_bytes: int, what: Path | str, device: Any = None, hint: str = "") -> None:
    """Refuses a dataset whose tensors would not fit in the memory free on `device`.

    Raises:
        UserInputError: naming the size it needs and the size free.
    """
    free = available_memory(device)
    if free is None or n_bytes <= free:
        return
    where = "host memory" if device is None or getattr(device, "type", "cpu") == "cpu" else str(device)
    raise UserInputError(f"{what} needs {_size(n_bytes)} in memory but only {_size(free)} of {where} is free"
                         f"{'; ' + hint if hint else ''}")


def _size(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.1f} {unit}" if unit != "B" else f"{int(n_bytes)} B"
        n_bytes /= 1024
    return f"{n_bytes:.1f} TiB"


def cache_dir() -> Path:
    """regbench's cache folder: $REGBENCH_CACHE, else ~/.cache/regbench (never the data folder,
    which may be read-only or shared)."""
    return Path(os.environ.get("REGBENCH_CACHE") or Path.home() / ".cache" / "regbench").expanduser()
