"""What the agent is told: the prompt of a PRP, from the default text or the user's template.

The default prompt holds the instructions, the PRP's gates and its whole text; a template (ini
``prp_prompt_template``) has placeholders filled instead. A further attempt adds what the gates
said; a redo on a newer tip adds why (``merge_queue.redo_prompt``).
"""

from __future__ import annotations

import re
from pathlib import Path

from pytest_prp.execute.gates import command_lines
from pytest_prp.spec.body_cache import body_of
from pytest_prp.spec.model import Prp


class TemplateUnreadable(Exception):
    """The prompt template file cannot be read (the message says why)."""


def agent_prompt(
    prp: Prp,
    template: Path | None,
    *,
    attempt: int = 1,
    feedback: str | None = None,
    redo: str | None = None,
) -> str:
    """The prompt of one agent run: the PRP's file through ``template`` (or the default
    prompt), the failed gates of the last attempt, and why the PRP is redone, if it is."""
    text = prp.path.read_text(encoding="utf-8")
    if template is not None:
        try:
            source = template.read_text(encoding="utf-8")
        except OSError as exc:
            raise TemplateUnreadable(f"prp_prompt_template: cannot read it: {exc}") from None
        prompt = render_prompt_template(source, prp, text)
    else:
        prompt = default_prompt(prp, text)
    if feedback and attempt > 1:
        prompt = retry_prompt(prompt, feedback, attempt)
    if redo:
        prompt = f"{prompt}\n\n{redo}"
    return prompt


def retry_prompt(prompt: str, feedback: str, attempt: int) -> str:
    """The prompt of a further attempt: the original task plus what the gates said."""
    return (
        f"{prompt}\n\n"
        f"## Attempt {attempt}: your previous attempt left failed gates\n\n"
        "Your changes are still in this directory. These validation gates failed when run "
        "after your last attempt; fix the implementation so that they pass (do not edit the "
        "gates, do not commit):\n\n"
        f"{feedback}\n"
    )


def describe_gates(prp: Prp) -> str:
    """The gates as the prompt lists them: executable commands, then checklist items."""
    gates = body_of(prp).gates
    runnable = [g for g in gates if g.executable]
    checklist = [g for g in gates if not g.executable]
    lines: list[str] = []
    if runnable:
        lines.append("Validation gates (shell commands run from this directory; each must exit 0):")
        for gate in runnable:
            lines.append(f"{gate.index}. {gate.name}")
            lines.extend(f"       {line}" for line in command_lines(gate))
            lines.extend(f"   Expected: {expected}" for expected in gate.expected)
    if checklist:
        if lines:
            lines.append("")
        lines.append("Checklist items (not run automatically; make them true):")
        lines.extend(f"- {gate.name}" for gate in checklist)
    return "\n".join(lines) if lines else "This PRP declares no validation gates."


def default_prompt(prp: Prp, text: str) -> str:
    """The agent prompt: instructions, the gates, and the PRP's whole text."""
    return f"""You are implementing PRP {prp.id}: "{prp.title}".
The complete PRP file ({prp.path.name}) is below, between the BEGIN and END markers.

What to do:
1. Implement every step of the PRP in the current working directory. It is a git worktree
   made for this PRP; create and change files only inside it.
2. Do not commit, create branches, push or rewrite git history: pytest-prp commits your work
   after the validation gates pass.
3. When you are done, pytest-prp runs the gates below from this directory. Run them yourself
   first and fix whatever fails.

{describe_gates(prp)}

===== BEGIN PRP {prp.id} ({prp.path.name}) =====
{text.rstrip()}
===== END PRP {prp.id} =====
"""


_PLACEHOLDER = re.compile(r"\{(prp_id|prp_text|gates|title)\}")


def render_prompt_template(template: str, prp: Prp, text: str) -> str:
    """Fill a prompt template (ini ``prp_prompt_template``).

    Placeholders: ``{prp_id}`` the PRP id, ``{title}`` its title, ``{prp_text}`` the whole PRP
    file, ``{gates}`` the gates as the default prompt lists them. Nothing else is touched, so
    other braces (JSON, shell ``${VAR}``) need no escaping.
    """
    values = {"prp_id": prp.id, "title": prp.title, "prp_text": text}

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        return describe_gates(prp) if name == "gates" else values[name]

    return _PLACEHOLDER.sub(fill, template)
