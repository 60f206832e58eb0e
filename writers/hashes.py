"""Model file hashes (AutoV2, as A1111 and Civitai use them), cached so a save never re-hashes.

A checkpoint is several GB and SHA-256 runs at roughly 1-2 GB/s, so hashing on every save
would add seconds. The cache is keyed by (real path, size, mtime_ns): a file replaced or
touched in place gets a new key and is hashed again. The in-memory cache can be backed by a
small JSON file (written atomically) so a restart of ComfyUI does not re-hash either.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write_bytes

log = logging.getLogger("runtime_metadata")

#: AutoV2 is the first 10 hex digits of the file's SHA-256 (A1111's ``Model hash``).
AUTOV2_LENGTH = 10
#: Read size: large enough that the per-read overhead is noise, small enough to stay in cache.
HASH_CHUNK_BYTES = 1 << 20
#: Entries kept in the cache file; a model folder has hundreds of files, not tens of thousands.
MAX_CACHE_ENTRIES = 10_000
#: A cache file larger than this is not ours (or is damaged): ignored rather than parsed.
MAX_CACHE_FILE_BYTES = 8 << 20
#: Version of the cache file's layout.
CACHE_FILE_VERSION = 1


@dataclass(frozen=True)
class FileKey:
    """What identifies one version of a file: real path, size and modification time."""

    realpath: str
    size: int
    mtime_ns: int


def file_key(path: str | os.PathLike[str]) -> FileKey:
    """The cache key of ``path`` as it is now."""
    real = os.path.realpath(path)
    st = os.stat(real)
    return FileKey(real, st.st_size, st.st_mtime_ns)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a whole file, hex, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """SHA-256 of model files by (realpath, size, mtime_ns), in memory and optionally on disk."""

    def __init__(self, cache_file: str | os.PathLike[str] | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self._entries: dict[FileKey, str] = {}
        self._lock = threading.Lock()
        self._loaded = False

    def sha256(self, path: str | os.PathLike[str]) -> str:
        """The full SHA-256 of ``path``, from the cache when the file has not changed."""
        key = file_key(path)
        if not self.enabled:
            return sha256_file(key.realpath)
        with self._lock:
            self._load_once()
            cached = self._entries.get(key)
        if cached is not None:
            return cached
        # Hashing happens outside the lock: two threads may hash the same file once each,
        # which is cheaper than serialising every save behind one multi-GB read.
        digest = sha256_file(key.realpath)
        if file_key(path) != key:
            # Changed while being read: the digest belongs to no single version of the file.
            return digest
        with self._lock:
            self._entries[key] = digest
            self._evict()
            self._store()
        return digest

    def autov2(self, path: str | os.PathLike[str]) -> str:
        """The AutoV2 hash of ``path``: the first 10 hex digits of its SHA-256."""
        return self.sha256(path)[:AUTOV2_LENGTH]

    def _evict(self) -> None:
        # Dicts keep insertion order, so the oldest entries go first.
        while len(self._entries) > MAX_CACHE_ENTRIES:
            del self._entries[next(iter(self._entries))]

    def _load_once(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.cache_file is None:
            return
        try:
            if self.cache_file.stat().st_size > MAX_CACHE_FILE_BYTES:
                raise ValueError("cache file too large")
            data = json.loads(self.cache_file.read_bytes())
            for item in data["entries"]:
                key = FileKey(str(item["path"]), int(item["size"]), int(item["mtime_ns"]))
                digest = str(item["sha256"])
                if len(digest) == 64:
                    self._entries[key] = digest
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # A broken cache only costs a re-hash; it must never stop a save.
            log.warning("[runtime-metadata] ignoring hash cache %s: %s", self.cache_file, exc)
            self._entries.clear()

    def _store(self) -> None:
        if self.cache_file is None:
            return
        entries = [
            {"path": k.realpath, "size": k.size, "mtime_ns": k.mtime_ns, "sha256": v} for k, v in self._entries.items()
        ]
        payload = json.dumps({"version": CACHE_FILE_VERSION, "entries": entries}).encode()
        try:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            # Not fsynced: losing the cache in a crash costs one re-hash, nothing else.
            atomic_write_bytes(self.cache_file, payload, durable=False)
        except OSError as exc:
            log.warning("[runtime-metadata] could not write hash cache %s: %s", self.cache_file, exc)


def autov2(path: str | os.PathLike[str], cache: HashCache | None = None) -> str:
    """The AutoV2 hash of ``path``, through ``cache`` when one is given."""
    if cache is None:
        return sha256_file(path)[:AUTOV2_LENGTH]
    return cache.autov2(path)
