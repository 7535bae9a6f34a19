"""Where a sweep's files live: a local folder, or an object store / shared URI (``s3://``, ``gs://``).

Local writes are atomic (temp file + rename, ``cycleseg.model.io``); on an object store one PUT is
atomic. Paths stay strings end to end, so ``s3://bucket/x`` is never turned into ``s3:/bucket/x``.
Object stores are reached through ``pyarrow.fs`` with the standard environment variables
(``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, … for S3 and S3-compatible stores; ``GOOGLE_APPLICATION_CREDENTIALS``
for GCS).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cycleseg.model.io import atomic_write, atomic_write_bytes


def is_uri(location: str | Path) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def local_path(location: str | Path) -> Path:
    s = str(location)
    return Path(s[len("file://") :] if s.startswith("file://") else s)


def join(base: str | Path, *parts: str) -> str:
    """``base/part/...`` as a string (a URI keeps its scheme)."""
    return "/".join([str(base).rstrip("/"), *parts])


def _fs(uri: str) -> tuple[Any, str]:
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)


def write_bytes(dest: str, data: bytes | None = None, *, table: pa.Table | None = None) -> None:
    """Write ``data`` (or ``table`` as Parquet) to ``dest``, a local path or a URI, all or nothing."""
    if not is_uri(dest):
        if table is not None:
            atomic_write(local_path(dest), lambda p: pq.write_table(table, p))
        else:
            atomic_write_bytes(local_path(dest), data or b"")
        return
    if table is not None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
    fs, path = _fs(dest)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data or b"")


def read_bytes(src: str) -> bytes | None:
    """The content of ``src`` (local path or URI), None if it does not exist."""
    if not is_uri(src):
        p = local_path(src)
        return p.read_bytes() if p.is_file() else None
    import pyarrow.fs as pafs

    fs, path = _fs(src)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    with fs.open_input_stream(path) as f:
        return f.read()


def _entries(folder: str | Path, dirs: bool) -> list[str]:
    """Names of the files (or folders) directly in ``folder`` (local or URI); empty when it does not exist."""
    if is_uri(folder):
        import pyarrow.fs as pafs

        fs, path = _fs(str(folder))
        kind = pafs.FileType.Directory if dirs else pafs.FileType.File
        return sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
                      if i.type == kind)
    d = local_path(folder)
    return sorted(p.name for p in d.iterdir() if (p.is_dir() if dirs else p.is_file())) if d.is_dir() else []


def list_files(folder: str | Path) -> list[str]:
    return _entries(folder, dirs=False)


def list_dirs(folder: str | Path) -> list[str]:
    return _entries(folder, dirs=True)


def is_dir(location: str | Path) -> bool:
    if is_uri(location):
        import pyarrow.fs as pafs

        fs, path = _fs(str(location))
        return fs.get_file_info(path).type == pafs.FileType.Directory
    return local_path(location).is_dir()


@contextlib.contextmanager
def local_copy(location: str | Path) -> Iterator[Path]:
    """A local folder with the content of ``location``: itself when local, else a temporary download."""
    if not is_uri(location):
        yield local_path(location)
        return
    import pyarrow.fs as pafs

    fs, path = _fs(str(location))
    with tempfile.TemporaryDirectory(prefix="cycleseg-") as tmp:
        pafs.copy_files(path, tmp, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        yield Path(tmp)


def upload_dir(src: Path, dest: str) -> None:
    """Copy the local folder ``src`` to ``dest`` (local path or URI), replacing what was there.

    Not atomic on an object store: callers publish ``dest`` afterwards (e.g. a pointer file) when it is complete.
    """
    if not is_uri(dest):
        target = local_path(dest)
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
        return
    import pyarrow.fs as pafs

    fs, path = _fs(dest)
    delete_dir(dest)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(str(src), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def delete_file(location: str) -> None:
    """Remove the file ``location`` (local path or URI); nothing if it is not there."""
    if not is_uri(location):
        local_path(location).unlink(missing_ok=True)
        return
    import pyarrow.fs as pafs

    fs, path = _fs(location)
    if fs.get_file_info(path).type == pafs.FileType.File:
        fs.delete_file(path)


def delete_dir(location: str) -> None:
    """Remove the folder ``location`` (local path or URI) and everything in it; nothing if it is not there."""
    if not is_uri(location):
        shutil.rmtree(local_path(location), ignore_errors=True)
        return
    import pyarrow.fs as pafs

    fs, path = _fs(location)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
