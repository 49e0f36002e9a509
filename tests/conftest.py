"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# ../shared/media next to the repository (present on the development machine, absent in a user's checkout).
SHARED_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"


@pytest.fixture
def shared_media() -> Path:
    """The shared real-media folder; skips the test when it is absent."""
    if not SHARED_MEDIA.is_dir():
        pytest.skip("../shared/media is not available")
    return SHARED_MEDIA
