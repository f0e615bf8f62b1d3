"""Turn the PRPs found under the given paths into an execution plan. Pure: no pytest, no git.

The plan is the selected PRPs in execution order (computed stage, then natural id order),
their stages, the critical path, likely file conflicts, and every problem found at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import PurePosixPath
from typing import Any, TypeVar

from pytest_prp.base.ids import natural_key
from pytest_prp.spec.model import Problem, Prp, display_path

HOURS = "hours"
PRPS = "prps"
_K = TypeVar("_K")


@dataclass(frozen=True)
class Selection:
    """What the user asked to run (the ``--prp-*`` options, already parsed)."""

    batches: tuple[str, ...] = ()  # --prp-batch (repeatable; comma lists are split here too)
    ids: tuple[str, ...] = ()  # --prp-id (already normalised ids)
    stage: int | None = None  # --prp-stage: only that computed stage
    start: str | None = None  # --prp-start: that PRP and every PRP after it in plan order
    all: bool = False  # --prp-all, or prp_enabled=true with nothing else given


@dataclass
class Conflict:
    """PRPs of one stage (run side by side) that all declare changing the same file."""

    stage: int
    path: str
    prp_ids: list[str]


@dataclass
class Plan:
    prps: list[Prp]  # selected, in execution order
    stages: dict[str, int]  # id -> computed stage (for selected prps)
    critical_path: list[str]
    critical_length: float  # hours when estimated for every PRP in the plan, else a count
    critical_unit: str  # HOURS or PRPS
    warnings: list[Problem] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)  # non-empty => nothing may run
    # id -> dependencies outside this plan (known elsewhere or completed): kept for the ledger.
    external_deps: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def stage_groups(self) -> dict[int, list[Prp]]:
        """The plan's PRPs grouped by computed stage, in execution order."""
        groups: dict[int, list[Prp]] = {}
        for prp in self.prps:
            groups.setdefault(self.stages[prp.id], []).append(prp)
        return groups


def _never_complete(_prp_id: str) -> bool:
    return False


def build_plan(
    known: list[Prp],
    selection: Selection,
    is_complete: Callable[[str], bool] = _never_complete,
) -> Plan:
    """Select PRPs from ``known``, order them by dependencies and validate everything at once.

    ``is_complete`` answers whether a PRP id not found under the given paths was already
    completed (the hook for the git ledger); such dependencies are satisfied.
    """
    by_id: dict[str, list[Prp]] = {}
    for prp in known:
        by_id.setdefault(prp.id, []).append(prp)

    errors: list[Problem] = []
    selected = _select(known, by_id, selection, errors)
    errors.extend(_duplicate_problems(selected, by_id))

    # Dependencies: inside the selection they order the plan; elsewhere they must exist.
    internal: dict[str, list[str]] = {}
    for prp in selected.values():
        internal[prp.id] = []
        for dep in _unique(prp.dependencies):
            if dep == prp.id:
                line = prp.dependency_lines.get(dep, prp.line)
                errors.append(Problem(prp.path, line, f"{prp.id} depends on itself"))
            elif dep in selected:
                internal[prp.id].append(dep)
            elif dep not in by_id and not is_complete(dep):
                errors.append(
                    Problem(
                        prp.path,
                        prp.dependency_lines.get(dep, prp.line),
                        f"{prp.id} depends on {dep}, which is not found under the given paths "
                        "and not completed",
                    )
                )

    cycles, acyclic = break_cycles(internal, natural_key)
    for cycle in cycles:
        first = selected[cycle[0]]
        errors.append(
            Problem(
                first.path,
                first.line,
                "dependency cycle: " + " -> ".join(cycle) + " (each PRP depends on the next)",
            )
        )

    stages = _compute_stages(acyclic)
    ordered = sorted(selected.values(), key=lambda p: (stages[p.id], natural_key(p.id)))
    chosen = _apply_filters(ordered, stages, selected, by_id, selection, errors)
    chosen_ids = {p.id for p in chosen}

    warnings: list[Problem] = []
    external: dict[str, list[str]] = {}
    for prp in chosen:
        warnings.extend(prp.warnings)
        contradiction = _stage_contradiction(prp, internal[prp.id], stages)
        if contradiction is not None:
            warnings.append(contradiction)
        outside = [d for d in _unique(prp.dependencies) if d != prp.id and d not in chosen_ids]
        if outside:
            external[prp.id] = outside

    path, length, unit = _critical_path(chosen, acyclic)
    return Plan(
        prps=chosen,
        stages={p.id: stages[p.id] for p in chosen},
        critical_path=path,
        critical_length=length,
        critical_unit=unit,
        warnings=warnings,
        conflicts=_conflicts(chosen, stages),
        errors=errors,
        external_deps=external,
    )


# --- selection ---------------------------------------------------------------------------------


def _batches_found(known: list[Prp]) -> str:
    batches = sorted({p.batch for p in known if p.batch is not None}, key=natural_key)
    if batches:
        return "batches found: " + ", ".join(batches)
    return "no PRP declares a batch" if known else "no PRPs found"


def _split_batches(batches: Iterable[str]) -> list[str]:
    out: list[str] = []
    for item in batches:
        out.extend(b.strip() for b in item.split(",") if b.strip())
    return _unique(out)


def _select(
    known: list[Prp], by_id: dict[str, list[Prp]], selection: Selection, errors: list[Problem]
) -> dict[str, Prp]:
    """The PRPs the selection names, by id (first file wins for a duplicated id)."""
    batches = _split_batches(selection.batches)
    picked: list[Prp] = []
    if selection.all:
        picked = list(known)
    else:
        for batch in batches:
            in_batch = [p for p in known if p.batch is not None and p.batch.strip() == batch]
            if not in_batch:
                errors.append(
                    Problem(
                        None,
                        None,
                        f"--prp-batch {batch}: no PRPs in that batch under the given paths "
                        f"({_batches_found(known)})",
                    )
                )
            picked.extend(in_batch)
        for prp_id in selection.ids:
            if prp_id in by_id:
                picked.extend(by_id[prp_id])
            else:
                errors.append(
                    Problem(
                        None,
                        None,
                        f"--prp-id {prp_id}: no PRP with that id under the given paths "
                        f"({_batches_found(known)})",
                    )
                )

    chosen: dict[str, Prp] = {}
    for prp in picked:
        chosen.setdefault(prp.id, prp)
    return chosen


def _duplicate_problems(selected: dict[str, Prp], by_id: dict[str, list[Prp]]) -> list[Problem]:
    problems = []
    for prp_id in selected:
        copies = by_id[prp_id]
        if len(copies) > 1:
            where = ", ".join(f"{display_path(p.path)}:{p.line}" for p in copies)
            problems.append(
                Problem(copies[0].path, copies[0].line, f"PRP id {prp_id} is used by: {where}")
            )
    return problems


def _apply_filters(
    ordered: list[Prp],
    stages: dict[str, int],
    selected: dict[str, Prp],
    by_id: dict[str, list[Prp]],
    selection: Selection,
    errors: list[Problem],
) -> list[Prp]:
    chosen = ordered
    present = sorted(set(stages.values()))
    if selection.stage is not None and selection.stage not in present:
        have = f"the selected PRPs have stages 1-{present[-1]}" if present else "no PRPs selected"
        errors.append(Problem(None, None, f"--prp-stage {selection.stage}: {have}"))
    elif selection.stage is not None:
        chosen = [p for p in chosen if stages[p.id] == selection.stage]

    start = selection.start
    if start is not None:
        if start not in by_id:
            errors.append(
                Problem(
                    None,
                    None,
                    f"--prp-start {start}: no PRP with that id under the given paths "
                    f"({_batches_found([p for copies in by_id.values() for p in copies])})",
                )
            )
        elif start not in selected:
            errors.append(
                Problem(
                    None,
                    None,
                    f"--prp-start {start} is not among the selected PRPs "
                    f"({_describe_batches(selected.values())})",
                )
            )
        else:
            position = [p.id for p in ordered].index(start)
            after = {p.id for p in ordered[position:]}
            chosen = [p for p in chosen if p.id in after]
            if not chosen and selection.stage is not None:
                errors.append(
                    Problem(
                        None,
                        None,
                        f"--prp-start {start} (stage {stages[start]}) comes after every PRP "
                        f"of --prp-stage {selection.stage}: nothing to run",
                    )
                )
    return chosen


def _describe_batches(prps: Iterable[Prp]) -> str:
    batches = sorted({p.batch for p in prps if p.batch is not None}, key=natural_key)
    if not batches:
        return "no batch"
    return ("batch " if len(batches) == 1 else "batches ") + ", ".join(batches)


# --- graph -------------------------------------------------------------------------------------


def break_cycles(
    graph: Mapping[_K, Iterable[_K]], order: Callable[[_K], Any]
) -> tuple[list[list[_K]], dict[_K, list[_K]]]:
    """Every cycle found (as "depends on" chains, each starting at its first node by ``order``)
    and the graph (node -> dependencies) with one edge of each removed.

    graphlib reports one cycle at a time, so remove an edge and look again: the user sees
    all cycles in one run, and stages can still be shown for the rest of the plan. The
    scheduler cuts them the same way, so that a bad graph never makes it wait forever.
    """
    acyclic = {node: list(deps) for node, deps in graph.items()}
    cycles: list[list[_K]] = []
    while True:
        try:
            tuple(TopologicalSorter(acyclic).static_order())
            return cycles, acyclic
        except CycleError as exc:
            # graphlib lists each node as a dependency of the next one; show "depends on" order.
            found: list[_K] = list(exc.args[1])
            chain = list(reversed(found))[:-1]
            first = min(range(len(chain)), key=lambda i: order(chain[i]))
            chain = chain[first:] + chain[:first]
            cycles.append([*chain, chain[0]])
            acyclic[found[1]].remove(found[0])


def stages_of(graph: dict[str, list[str]]) -> dict[str, int]:
    """Stage of every PRP of ``graph`` (id -> dependencies; those outside it are done or
    someone else's), as the plan computes it, cycles broken the same way."""
    inside = {node: [d for d in deps if d in graph] for node, deps in graph.items()}
    return _compute_stages(break_cycles(inside, natural_key)[1])


def _compute_stages(acyclic: dict[str, list[str]]) -> dict[str, int]:
    stages: dict[str, int] = {}
    for node in TopologicalSorter(acyclic).static_order():
        deps = acyclic.get(node, [])
        stages[node] = 1 + max((stages[d] for d in deps), default=0)
    return stages


def _stage_contradiction(prp: Prp, deps: list[str], stages: dict[str, int]) -> Problem | None:
    """Warn when a PRP cannot run in the stage it declares: a dependency runs in that stage
    or later, so the graph puts it later. (Declared later than needed is no contradiction, and
    a dependency's own declared stage does not matter: when it runs does.)"""
    declared = prp.declared_stage
    if declared is None or stages[prp.id] <= declared:
        return None
    late = [f"{dep} (stage {stages[dep]})" for dep in deps if stages[dep] >= declared]
    return Problem(
        prp.path,
        prp.line,
        f"{prp.id} is declared stage {declared} but runs in stage {stages[prp.id]}: "
        f"it depends on {', '.join(late)}",
    )


def chain_weights(estimates: Mapping[_K, float | None]) -> tuple[dict[_K, float], bool]:
    """The chain rule, for the plan view and the scheduler alike: a PRP weighs its estimated
    hours when every PRP has an estimate, else 1 (chains are counted in PRPs). Also says which."""
    by_hours = all(hours is not None for hours in estimates.values())
    return {k: (hours or 0.0) if by_hours else 1.0 for k, hours in estimates.items()}, by_hours


def _critical_path(plan: list[Prp], graph: dict[str, list[str]]) -> tuple[list[str], float, str]:
    """Longest dependency chain in the plan: by estimated hours if all are known, else by count."""
    if not plan:
        return [], 0, PRPS
    weight, by_hours = chain_weights({p.id: p.estimated_hours for p in plan})
    path, length = longest_chain([p.id for p in plan], graph, weight)
    return path, length, HOURS if by_hours else PRPS


def longest_chain(
    order: list[str], graph: Mapping[str, Iterable[str]], weight: Mapping[str, float]
) -> tuple[list[str], float]:
    """The chain of dependencies with the largest total weight, and that total. ``order``
    lists every id after its dependencies; dependencies not in ``weight`` are left out."""
    best: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for prp_id in order:
        deps = sorted((d for d in graph.get(prp_id, ()) if d in best), key=natural_key)
        prev = max(deps, key=lambda d: best[d], default=None)  # first of equals in id order
        via[prp_id] = prev
        best[prp_id] = weight.get(prp_id, 0.0) + (best[prev] if prev is not None else 0.0)
    if not best:
        return [], 0.0
    last = max(best, key=lambda i: best[i])  # first of equals in order
    path: list[str] = []
    node: str | None = last
    while node is not None:
        path.append(node)
        node = via[node]
    return list(reversed(path)), best[last]


def _conflicts(plan: list[Prp], stages: dict[str, int]) -> list[Conflict]:
    touched: dict[tuple[int, str], list[str]] = {}
    for prp in plan:
        for path in _unique(normalise_path(f) for f in prp.files_modified):
            touched.setdefault((stages[prp.id], path), []).append(prp.id)
    return [
        Conflict(stage, path, ids) for (stage, path), ids in sorted(touched.items()) if len(ids) > 1
    ]


def normalise_path(path: str) -> str:
    """A ``files_modified`` entry as the conflict rule compares it (planning and scheduler)."""
    return PurePosixPath(path.strip().replace("\\", "/")).as_posix()


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))
