from __future__ import annotations

import pytest

from dlp.builtin import BUILTIN_PATTERNS
from dlp.engine import Scanner


@pytest.fixture(scope="session")
def scanner() -> Scanner:
    """Every built-in pattern, with its default action."""
    return Scanner(BUILTIN_PATTERNS)
