"""The DSPy adapter every structured strategy runs with.

DSPy's ChatAdapter, with three changes that keep weak and base models measurable:
- no silent JSON-adapter retry (it would add an uncounted second LM call per failure);
- for base models (`prefill=True`) the prompt ends with the first output field's marker, so the
  model continues the structure instead of having to start it;
- parsing is lenient: missing fields become empty and the last output field (the answer) falls
  back to the whole completion, which the task's answer parser then reads or flags.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError


class LenientChatAdapter(dspy.ChatAdapter):
    def __init__(self, prefill: bool = False):
        super().__init__(use_json_adapter_fallback=False)
        self.prefill = prefill

    def format(self, signature, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        messages = super().format(signature, demos, inputs)
        if self.prefill:
            first = next(iter(signature.output_fields))
            last = messages[-1]
            messages[-1] = {**last, "content": f"{last['content']}\n\n[[ ## {first} ## ]]\n"}
        return messages

    def parse(self, signature, completion: str) -> dict[str, Any]:
        fields = list(signature.output_fields)
        if self.prefill and not completion.lstrip().startswith(f"[[ ## {fields[0]} ## ]]"):
            completion = f"[[ ## {fields[0]} ## ]]\n{completion}"
        try:
            return super().parse(signature, completion)
        except AdapterParseError as exc:
            found = dict(exc.parsed_result or {})
        for name in fields:
            if name not in found:
                found[name] = completion if name == fields[-1] else ""
        return found
