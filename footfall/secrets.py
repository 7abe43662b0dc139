"""The admin secret that guards the read API and management endpoints (never the public write key)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from schemas.config import FootfallSettings


def admin_key(settings: FootfallSettings, create: bool = True) -> str | None:
    """FOOTFALL_ADMIN_KEY, else `<data_dir>/admin.key`, created (mode 0600) on first use."""
    if key := os.environ.get("FOOTFALL_ADMIN_KEY"):
        return key
    path = Path(settings.data_dir) / "admin.key"
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
