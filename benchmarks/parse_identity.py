"""Check, not a benchmark: this version reads every PRP body exactly as an earlier one (``--before
REV``, default ``main``) did, before a speed change to the parser is kept.

Both versions parse the same files, each in a subprocess of its own with its ``pytest_prp``
first on ``PYTHONPATH``: every corpus file (``--corpus``), the own fixtures (``tests/shapes``,
``PRPs/``), ``--random`` documents stitched from random stretches of those files with section
headings among them, and the generated benchmark PRPs (``bench_collection.generate_prps``,
``--count``). Compared: the full parse (``parse_body``: steps with their text, code blocks and
lines, gates with their commands, kinds and lines, warnings), the plan view's summary
(``summarise_body``), and the output of ``pytest --collect-only --prp-all --prp-plan=json``
and ``--prp-plan`` (text) on the generated PRPs, cold. Prints ``identical`` or the first
differences; exits 0 when identical, 1 otherwise (or when the setup fails).

Run:  .venv/bin/python benchmarks/parse_identity.py --before main
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from _harness import SetupError, clean_env, run_main
from bench_collection import DEFAULT_CORPUS, REPO_ROOT, _checkout, build_repo, find_corpus

# Run in each version's subprocess: file paths on stdin, one JSON line per file on stdout.
_DUMP = r"""
import json, sys
from pathlib import Path
from pytest_prp.spec.body import parse_body, summarise_body
from pytest_prp.spec.frontmatter import split_frontmatter
import pytest_prp
print(json.dumps(pytest_prp.__file__))  # which version this is
for name in sys.stdin.read().splitlines():
    path = Path(name)
    text = path.read_text(encoding="utf-8")
    split = split_frontmatter(text)
    first = split[2] if split else 1
    markdown = "".join(text.splitlines(keepends=True)[first - 1 :])
    try:
        body = repr(parse_body(markdown, path, first))
        summary = repr(summarise_body(markdown, path, first))
    except Exception as exc:  # the same failure either way is the same result
        body = summary = f"raised {type(exc).__name__}: {exc}"
    print(json.dumps([name, body, summary]))
"""

HEADINGS = (
    "## Validation",
    "## Validation Gates",
    "## Implementation",
    "## Implementation Steps",
    "### Step 2",
    "### Gate 1",
    "Validation\n----------",
    "# Other",
    "## 5. Validation Strategy",
)


def own_files() -> list[Path]:
    return sorted((REPO_ROOT / "tests" / "shapes").glob("*.md.txt")) + sorted(
        (REPO_ROOT / "PRPs").rglob("*.md")
    )


def random_documents(sources: list[Path], dest: Path, count: int, seed: int) -> list[Path]:
    """Documents of 3-30 random stretches (1-40 lines) of the sources, with section headings
    and blank lines between some of them: fences cut open, lists cut short, sections mixed."""
    rng = random.Random(seed)
    pools = [p.read_text(encoding="utf-8").split("\n") for p in sources]
    dest.mkdir(parents=True, exist_ok=True)
    made = []
    for n in range(count):
        parts: list[str] = []
        for _ in range(rng.randint(3, 30)):
            lines = rng.choice(pools)
            start = rng.randrange(len(lines))
            parts += lines[start : start + rng.randint(1, 40)]
            if rng.random() < 0.3:
                parts += ["", rng.choice(HEADINGS), ""]
            elif rng.random() < 0.3:
                parts.append("")
        path = dest / f"random-{n:05d}.md"
        path.write_text("\n".join(parts) + rng.choice(["", "\n"]), encoding="utf-8")
        made.append(path)
    return made


def dump(pythonpath: str | None, paths: list[Path], cwd: Path) -> dict[str, tuple[str, str]]:
    """Each file's parse and summary by the ``pytest_prp`` on ``pythonpath`` (this version's,
    as installed, without one). ``cwd`` must hold no ``pytest_prp``: ``python -c`` puts it
    first on the module path."""
    env = clean_env()
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    result = subprocess.run(
        [sys.executable, "-c", _DUMP],
        input="\n".join(str(p) for p in paths),
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    if result.returncode != 0:
        raise SetupError(f"parsing failed ({pythonpath or 'this version'}):\n{result.stderr}")
    found = {}
    first, *lines = result.stdout.splitlines()
    imported = Path(json.loads(first))
    expected = Path(pythonpath) if pythonpath is not None else REPO_ROOT
    if not imported.is_relative_to(expected):
        raise SetupError(f"imported {imported}, not the version in {expected}")
    for line in lines:
        name, body, summary = json.loads(line)
        found[name] = (body, summary)
    return found


def plans(pythonpath: str | None, repo: Path) -> list[str]:
    """The JSON and the text plan of the generated PRPs, cold."""
    env = clean_env("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    out = []
    for form in ("--prp-plan=json", "--prp-plan"):
        command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        result = subprocess.run(
            [*command, "--prp-all", form, "PRPs"],
            cwd=repo,
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        # The text plan ends with pytest's timing line: everything before it is compared.
        lines = [line for line in result.stdout.splitlines() if " in " not in line[-12:]]
        out.append(f"exit {result.returncode}\n" + "\n".join(lines) + result.stderr)
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="main", metavar="REV", help="default: main")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--count", type=int, default=2000, help="generated PRPs (default 2000)")
    parser.add_argument("--random", type=int, default=3000, help="random documents")
    parser.add_argument("--seed", type=int, default=12)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[str]:
    corpus = find_corpus(args.corpus)
    work = Path(tempfile.mkdtemp(prefix="prp-identity-"))
    try:
        before = _checkout(args.before, work)
        repo = work / "repo"
        repo.mkdir()
        build_repo(repo, corpus, args.count)
        corpus_paths = sorted(args.corpus.rglob("*.md"))
        sources = corpus_paths + own_files()
        randoms = random_documents(sources, work / "random", args.random, args.seed)
        generated = sorted((repo / "PRPs").glob("*.md"))
        groups = {
            "corpus files": corpus_paths,
            "own fixtures": own_files(),
            "random documents": randoms,
            "generated benchmark PRPs": generated,
        }
        everything = [p for paths in groups.values() for p in paths]
        new, old = dump(None, everything, work), dump(before, everything, work)
        out = [f"this version against pytest_prp at {args.before}:"]
        differ = 0
        for group, paths in groups.items():
            bad = [p for p in paths if new[str(p)] != old[str(p)]]
            differ += len(bad)
            out.append(f"  {group}: {len(paths)} files, {len(bad)} read differently")
            for path in bad[:3]:
                parsed, earlier = new[str(path)], old[str(path)]
                out.append(f"    {path}:")
                out += [f"      now    {parsed}"[:400], f"      before {earlier}"[:400]]
        plan_new, plan_old = plans(None, repo), plans(before, repo)
        for form, now, then in zip(("json", "text"), plan_new, plan_old, strict=True):
            same = now == then
            differ += not same
            out.append(
                f"  --prp-plan={form} of the {len(generated)} generated PRPs, cold: "
                + ("the same output" if same else "DIFFERENT output")
            )
        out.append("identical" if differ == 0 else f"NOT identical: {differ} differences")
        if differ:
            raise _Differ(out)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


class _Differ(SetupError):
    """Differences found: printed, exit status 1."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    return run_main("parse_identity", parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
