"""pytest collection nodes: one File per PRP markdown file, one Item per PRP, and the filler item
xdist workers end their queue with (``scheduler.FILLER_NODEID``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from pytest_prp.keys import KNOWN_PRPS, LOAD_ERRORS, NOT_PRPS
from pytest_prp.spec.frontmatter import load_prp
from pytest_prp.spec.model import Prp, PrpUserError

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr


class PrpFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        result = load_prp(self.path)
        if result.errors:
            load_errors = self.config.stash.get(LOAD_ERRORS, None)
            if load_errors is not None:  # kept for the plan view, which lists every problem
                load_errors.extend(result.errors)
            raise PrpUserError(result.errors)
        if result.prp is None:
            not_prps = self.config.stash.get(NOT_PRPS, None)
            if not_prps is not None and result.skipped:
                not_prps.append((self.path, result.skipped))
            return
        registry = self.config.stash.get(KNOWN_PRPS, None)
        if registry is not None:
            registry.append(result.prp)
        yield PrpItem.from_parent(self, name=result.prp.id, prp=result.prp)

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, PrpUserError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def register_skipped_file(node: PrpFile) -> None:
    """The PRP of a file whose collection was skipped (``--lf``): known, not an item.
    A file that cannot be read now is left out: it is not part of this run."""
    registry = node.config.stash.get(KNOWN_PRPS, None)
    if registry is None:
        return
    result = load_prp(node.path)
    if result.prp is not None and not result.errors:
        registry.append(result.prp)


class PrpItem(pytest.Item):
    def __init__(self, *, prp: Prp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.prp = prp
        self.stage = 1

    def runtest(self) -> None:
        from pytest_prp.runner import run_call  # late: execution code is not needed to collect

        run_call(self)

    def setup(self) -> None:
        from pytest_prp.runner import run_setup

        run_setup(self)

    def teardown(self) -> None:
        from pytest_prp.runner import run_teardown

        run_teardown(self)

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, PrpUserError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def _repr_failure_py(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None
    ) -> str | TerminalRepr:
        # Setup and teardown errors come here, not to repr_failure: same rule, no traceback.
        if isinstance(excinfo.value, PrpUserError):
            return str(excinfo.value)
        return super()._repr_failure_py(excinfo, style=style)

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.prp.line - 1, f"{self.prp.id}: {self.prp.title}"


class FillerItem(pytest.Item):
    """The do-nothing item every xdist worker collects for pytest-prp's scheduler.

    An xdist worker runs the last item of its queue only once the next one arrives; the
    scheduler sends each PRP followed by this item, so the PRP starts at once. It runs no
    setup, makes no report, and may run any number of times (see ``scheduler``).
    """

    def runtest(self) -> None:
        pass

    def setup(self) -> None:
        pass

    def teardown(self) -> None:
        pass
