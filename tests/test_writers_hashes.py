"""AutoV2 hashes: correct value, cached by (realpath, size, mtime_ns) in memory and on disk."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from runtime_metadata.writers import hashes
from runtime_metadata.writers.hashes import HashCache, autov2


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "model.safetensors"
    # Larger than one read chunk, so chunked hashing is exercised.
    path.write_bytes(os.urandom(hashes.HASH_CHUNK_BYTES * 2 + 123))
    return path


@pytest.fixture
def count_hashing(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = hashes.sha256_file

    def counting(path: str | os.PathLike[str]) -> str:
        calls.append(str(path))
        return real(path)

    monkeypatch.setattr(hashes, "sha256_file", counting)
    return calls


def test_autov2_is_first_ten_hex_digits_of_the_whole_file(model: Path) -> None:
    expected = hashlib.sha256(model.read_bytes()).hexdigest()[:10]
    assert autov2(model) == expected
    assert HashCache().autov2(model) == expected


def test_memory_cache_hashes_once(model: Path, count_hashing: list[str]) -> None:
    cache = HashCache()
    first = cache.autov2(model)
    assert cache.autov2(model) == first
    assert cache.autov2(str(model)) == first
    assert len(count_hashing) == 1


def test_symlink_shares_the_real_file_entry(model: Path, count_hashing: list[str]) -> None:
    link = model.parent / "link.safetensors"
    link.symlink_to(model)
    cache = HashCache()
    assert cache.autov2(link) == cache.autov2(model)
    assert len(count_hashing) == 1


def test_changed_file_is_hashed_again(model: Path, count_hashing: list[str]) -> None:
    cache = HashCache()
    before = cache.autov2(model)
    model.write_bytes(b"different content")
    after = cache.autov2(model)
    assert after == hashlib.sha256(b"different content").hexdigest()[:10] != before
    assert len(count_hashing) == 2


def test_touched_file_is_hashed_again(model: Path, count_hashing: list[str]) -> None:
    cache = HashCache()
    cache.autov2(model)
    st = model.stat()
    os.utime(model, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    cache.autov2(model)
    assert len(count_hashing) == 2


def test_file_cache_survives_a_restart(model: Path, tmp_path: Path, count_hashing: list[str]) -> None:
    cache_file = tmp_path / "hashes.json"
    value = HashCache(cache_file).autov2(model)
    stored = json.loads(cache_file.read_text())
    assert stored["version"] == 1
    assert stored["entries"][0]["path"] == os.path.realpath(model)
    assert HashCache(cache_file).autov2(model) == value
    assert len(count_hashing) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".rm-tmp-")]


@pytest.mark.parametrize("content", [b"", b"{not json", b'{"version": 1, "entries": [{"path": 3}]}', b"[]"])
def test_broken_cache_file_is_ignored(model: Path, tmp_path: Path, content: bytes) -> None:
    cache_file = tmp_path / "hashes.json"
    cache_file.write_bytes(content)
    assert HashCache(cache_file).autov2(model) == autov2(model)
    assert json.loads(cache_file.read_text())["entries"][0]["sha256"].startswith(autov2(model))


def test_disabled_cache_rehashes_and_writes_nothing(model: Path, tmp_path: Path, count_hashing: list[str]) -> None:
    cache_file = tmp_path / "hashes.json"
    cache = HashCache(cache_file, enabled=False)
    cache.autov2(model)
    cache.autov2(model)
    assert len(count_hashing) == 2
    assert not cache_file.exists()


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        HashCache().autov2(tmp_path / "absent.safetensors")
