"""Shared pieces strategies build on: the task as a DSPy signature, options as text, voting."""

from __future__ import annotations

from collections import Counter
from typing import Any

import dspy

from promptopt.answers import format_options
from promptopt.images import as_dspy, is_image_field


def signature_for(task, instructions: str | None = None) -> type[dspy.Signature]:
    """The task as a DSPy signature: its input fields in, one `answer` out."""
    fields: dict[str, Any] = {}
    for name in task.input_fields:
        desc = "lettered options, one per line" if name == "options" else ""
        kind = (list[dspy.Image] if name.endswith("images") else dspy.Image) if is_image_field(name) else str
        fields[name] = (kind, dspy.InputField(desc=desc))
    fields["answer"] = (str, dspy.OutputField(desc=task.answer_type.describe({})))
    return dspy.Signature(fields, (instructions or task.spec.baseline.instructions).strip())


def plain_prompt(instructions: str, inputs: dict, cue: str = "Answer:", skip: tuple[str, ...] = ()) -> str:
    """The fixed HELM-style prompt: instructions, each input as "Name: value" (options as
    lettered lines), then the cue. `skip` leaves inputs out (a cloze prompt shows no options)."""
    lines = [instructions.strip(), ""] if instructions.strip() else []
    for name, value in inputs.items():
        if name in skip or is_image_field(name):  # images go beside the text (`images.message_content`)
            continue
        if name == "options":
            lines.append(format_options(value) if isinstance(value, dict) else str(value))
        else:
            lines.append(f"{name.replace('_', ' ').capitalize()}: {value}")
    lines.append(cue)
    return "\n".join(lines)


def as_text(inputs: dict) -> dict:
    """Inputs as DSPy sees them: options rendered as lettered lines, images as `dspy.Image`."""
    return {
        k: format_options(v) if k == "options" and isinstance(v, dict) else as_dspy(v) if is_image_field(k) else v
        for k, v in inputs.items()
    }


def vote(answers: list[str | None]) -> str | None:
    """Plurality over parsed answers; ties go to the answer that was given first.

    Unparsed votes abstain. Deterministic: the same votes in the same order give the same result.
    """
    valid = [a for a in answers if a is not None]
    if not valid:
        return None
    counts = Counter(valid)
    top = max(counts.values())
    return next(a for a in valid if counts[a] == top)


def ask(module, **inputs) -> Any:
    """Call a DSPy predictor; an empty or unreadable completion gives None instead of raising.

    Ensembles use it so that one unreadable vote abstains instead of failing the example.
    """
    from dspy.utils.exceptions import AdapterParseError

    try:
        return module(**inputs)
    except AdapterParseError:
        return None
