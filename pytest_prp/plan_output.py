"""The plan view (``--prp-plan[=text|json|mermaid]``) written out: to the terminal with pytest's
lines, or (json, mermaid) as the only thing on stdout, its errors on stderr.

Rendering is ``plan_view``'s (pure); this is the pytest side of it: the terminal reporter,
output capture, the body summaries kept in pytest's cache (``body_cache``) and those made on two
processes (``plan_summaries``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pytest

    from pytest_prp.plan.planning import Plan


def show_plan(config: pytest.Config, plan: Plan, fmt: str) -> None:
    from pytest_prp.plan import plan_view
    from pytest_prp.spec import body_cache

    # pytest's cache (absent with -p no:cacheprovider) spares unchanged bodies a parse.
    cache = getattr(config, "cache", None)
    keys = body_cache.load(cache, plan.prps) if cache is not None else {}
    if fmt != "mermaid":  # the only form without step and gate counts
        from pytest_prp.plan_summaries import summarise

        summarise(plan.prps)  # the bodies not in the cache, on two processes when it pays
    if fmt == "json":
        text = plan_view.render_json(plan)
    elif fmt == "mermaid":
        text = plan_view.render_mermaid(plan)
    else:
        text = plan_view.render_text(plan)
    if cache is not None:
        body_cache.store(cache, plan.prps, keys)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        for line in text.rstrip("\n").splitlines():
            reporter.write_line(line)
        return
    # No terminal reporter (json, mermaid): the document alone goes to the real stdout, and
    # the errors to stderr, since pytest's own report of them went with the terminal reporter.
    errors = "".join(f"prp: error: {problem}\n" for problem in plan.errors)
    capman = config.pluginmanager.get_plugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()
            sys.stderr.write(errors)
            sys.stderr.flush()
    else:
        sys.stdout.write(text)
        sys.stderr.write(errors)
