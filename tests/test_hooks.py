"""The types a hook author needs come from ``pytest_prp.hooks``, wherever the package keeps them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pytest_prp.hooks as hooks

NAMES = ["Gate", "GateResult", "PrpContext", "ProcessResult", "StepsOutcome"]


@pytest.mark.parametrize("name", NAMES)
def test_a_hook_type_is_importable_from_hooks(name: str) -> None:
    found = getattr(hooks, name)
    assert isinstance(found, type) and found.__name__ == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        hooks.Nothing  # noqa: B018


def test_importing_the_hookspecs_loads_none_of_the_types() -> None:
    """pytest imports ``hooks`` in every run: the types are loaded only when asked for."""
    script = (
        "import sys, pytest_prp.hooks\n"
        "print(sorted(m for m in sys.modules if m.startswith('pytest_prp')))"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "['pytest_prp', 'pytest_prp.hooks']"
