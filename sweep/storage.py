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
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..model.errors import UserError
from ..model.io import atomic_write, atomic_write_bytes, check_output_dir

SCHEMES = ("s3", "gs", "gcs")  # what pyarrow.fs reaches with the standard credentials (module docstring)
PROBE_SECONDS = 20.0  # an endpoint that never answers, or a credential lookup that hangs, is refused after this
# one look at the location in a child process, which can be killed wherever pyarrow or the AWS/GCS SDK waits
_PROBE = """
import sys
import pyarrow.fs as fs
try:
    f, path = fs.FileSystem.from_uri(sys.argv[1])
    f.get_file_info(path)
except Exception as e:
    print(" ".join(str(e).split()) or type(e).__name__, file=sys.stderr)
    sys.exit(1)
"""


def is_uri(location: str | Path) -> bool:
    return "://" in str(location) and not str(location).startswith("file://")


def check_storage_option(storage: str) -> None:
    """``--storage``: not empty, and a folder this machine can write or an object store that answers."""
    if not storage.strip():
        raise UserError("--storage is empty; give a folder or an s3:// / gs:// URI, e.g. --storage runs")
    if is_uri(storage):
        check_reachable(storage, "--storage")
    else:
        check_output_dir(local_path(storage), "--storage")


def check_reachable(location: str, what: str) -> None:
    """Refuse, within ``PROBE_SECONDS``, a URI whose scheme pyarrow cannot reach, or whose store does not answer
    or refuses these credentials; the error names what to set. A local path passes (its checks are elsewhere)."""
    if not is_uri(location):
        return
    scheme, rest = location.split("://", 1)
    if scheme.lower() not in SCHEMES:
        raise UserError(f"{what} '{location}': {scheme}:// is not a storage cycleseg can use; give a local or shared "
                        "folder, s3://bucket/path (S3, or an S3-compatible store with AWS_ENDPOINT_URL) or "
                        "gs://bucket/path")
    if not rest.split("/", 1)[0].split("?", 1)[0]:
        raise UserError(f"{what} '{location}' names no bucket; write {scheme}://bucket/path")
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE, location], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        raise UserError(f"{what} '{location}': no answer within {PROBE_SECONDS:g} s; {_access_hint(scheme)}") from None
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["no reason given"])[-1]
        why = why if len(why) <= 240 else why[:237] + "..."
        raise UserError(f"{what} '{location}' cannot be reached ({why}); {_access_hint(scheme)}")


def _access_hint(scheme: str) -> str:
    """What to set for ``scheme``, given what this environment sets now."""
    env = os.environ
    if scheme.lower() == "s3":
        keys = env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY")
        files = [env.get("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
                 env.get("AWS_CONFIG_FILE", "~/.aws/config")]
        elsewhere = env.get("AWS_PROFILE") or any(Path(f).expanduser().is_file() for f in files)
        creds = ("check that these AWS credentials may read the bucket" if keys or elsewhere else
                 "no AWS credentials are set: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)")
        endpoint = (f"check AWS_ENDPOINT_URL ({env['AWS_ENDPOINT_URL']}) answers" if env.get("AWS_ENDPOINT_URL")
                    else "for an S3-compatible store (e.g. MinIO) set AWS_ENDPOINT_URL")
        return f"{creds}; {endpoint}"
    if env.get("GOOGLE_APPLICATION_CREDENTIALS"):
        return (f"check that GOOGLE_APPLICATION_CREDENTIALS ({env['GOOGLE_APPLICATION_CREDENTIALS']}) may read the "
                "bucket and that storage.googleapis.com answers from here")
    return ("no Google credentials are set: set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file (off "
            "Google Cloud there is no metadata server to ask)")


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
