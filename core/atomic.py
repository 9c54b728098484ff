"""Write small files so a reader never sees half of one: a temporary sibling, then os.replace."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


def write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (safe across processes and threads)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2))


def write_bytes(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step (safe across processes and threads)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
