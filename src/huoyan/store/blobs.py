"""Content-addressed storage for evidence and model artifacts: a file's name is its sha256.

The same image stored twice takes the space once, and a record's reference can be
checked against the bytes at any time (``verify``) — what an auditor wants. Model
versions are kept here too, so a version is its content, wherever its file came from.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huoyan.core.durable import write_durably


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    """A file's sha256, read in 1 MB pieces (model artifacts are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def put(self, data: bytes, sha256: str | None = None) -> str:
        digest = sha256 or sha256_hex(data)
        target = self.path(digest)
        try:
            # Stored already: its time is set to now, so retention (``remove``) leaves
            # alone the bytes a record being stored now is about to reference.
            os.utime(target)
        except FileNotFoundError:
            write_durably(target, data)
        return digest

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def verify(self, sha256: str) -> bool:
        p = self.path(sha256)
        return p.exists() and sha256_hex(p.read_bytes()) == sha256

    def put_file(self, source: Path, sha256: str | None = None) -> str:
        """Store a file's content (a model artifact: hundreds of MB, copied in pieces)."""
        digest = sha256 or file_sha256(source)
        target = self.path(digest)
        if not target.exists():
            write_durably(target, source)
        return digest

    def has(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def stored_since(self, sha256: str, since: float) -> bool:
        """Whether the blob was stored (again) at or after ``since`` (a ``time.time()``);
        False for a missing one."""
        try:
            return self.path(sha256).stat().st_mtime >= since
        except FileNotFoundError:
            return False

    def remove(self, sha256: str, unless_stored_since: float) -> bool:
        """Delete a blob (retention); whether it was. A blob stored again at or after
        ``unless_stored_since`` (a ``time.time()``) is kept, and a missing one is not deleted."""
        if self.stored_since(sha256, unless_stored_since):
            return False
        try:
            self.path(sha256).unlink()
        except FileNotFoundError:
            return False
        return True
