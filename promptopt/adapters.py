"""The DSPy adapters structured strategies run with: the prompt format, a config knob
(`adapter`: chat, the default, json or xml; promptopt.registry.ADAPTERS).

DSPy's ChatAdapter, with changes that keep weak and base models measurable:
- no silent JSON-adapter retry (it would add an uncounted second LM call per failure);
- lenient parsing: missing fields become empty and the last output field (the answer) falls
  back to the whole completion, which the task's answer parser then reads or flags;
- for base models (`prefill=True`), which continue text rather than follow instructions: the
  prompt ends with the first output field's marker so the model writes that field; the field
  ends at a blank line (an answer-only prompt at the end of its line); and when the completion
  lacks the last field (the answer), one short follow-up call continues the same text after
  that field's marker. The follow-up is a real LM call and is counted like any other.
"""

from __future__ import annotations

from typing import Any

import dspy
from dspy.clients._deprecation import adapter_message_call
from dspy.utils.exceptions import AdapterParseError


def _marker(name: str) -> str:
    return f"[[ ## {name} ## ]]"


class LenientChatAdapter(dspy.ChatAdapter):
    def __init__(self, prefill: bool = False, cue_tokens: int = 24):
        super().__init__(use_json_adapter_fallback=False)
        self.prefill = prefill
        self.cue_tokens = cue_tokens

    def format(self, signature, demos: list[dict[str, Any]], inputs: dict[str, Any]) -> list[dict[str, Any]]:
        messages = super().format(signature, demos, inputs)
        if self.prefill:
            first = next(iter(signature.output_fields))
            last = messages[-1]
            messages[-1] = {**last, "content": f"{last['content']}\n\n{_marker(first)}\n"}
        return messages

    def __call__(self, lm, lm_kwargs: dict[str, Any], signature, demos, inputs) -> list[dict[str, Any]]:
        if not self.prefill:
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        processed = self._call_preprocess(lm, lm_kwargs, signature, inputs)
        messages = self.format(processed, demos, inputs)
        first_kwargs = {**lm_kwargs, "stop": ["\n\n", "[[ ##"]}
        if list(processed.output_fields) == ["answer"]:
            # an answer alone is one line, as in the cue: a base model otherwise goes on to list
            # the options again, and a multi-line reply is not read as an answer
            first_kwargs = {**first_kwargs, "stop": ["\n"], "max_tokens": self.cue_tokens}
        with adapter_message_call(lm, messages):
            outputs = lm(messages=messages, **first_kwargs)
        outputs = [self._cue_last_field(lm, lm_kwargs, messages, processed, out) for out in outputs]
        return self._call_postprocess(processed, signature, outputs, lm, lm_kwargs)

    def _cue_last_field(self, lm, lm_kwargs, messages, signature, output):
        text = output if isinstance(output, str) else output.get("text") or ""
        fields = list(signature.output_fields)
        if len(fields) < 2 or _marker(fields[-1]) in text:
            return output
        written = text.strip()
        cue = f"{written}\n\n{_marker(fields[-1])}\n"
        follow = [*messages[:-1], {**messages[-1], "content": messages[-1]["content"] + cue}]
        cue_kwargs = {**lm_kwargs, "stop": ["\n"], "max_tokens": self.cue_tokens, "n": 1}
        with adapter_message_call(lm, follow):
            tail = lm(messages=follow, **cue_kwargs)[0]
        tail = tail if isinstance(tail, str) else tail.get("text") or ""
        full = f"{cue}{tail}"
        return full if isinstance(output, str) else {**output, "text": full}

    def parse(self, signature, completion: str) -> dict[str, Any]:
        fields = list(signature.output_fields)
        if self.prefill and not completion.lstrip().startswith(_marker(fields[0])):
            completion = f"{_marker(fields[0])}\n{completion}"
        try:
            return super().parse(signature, completion)
        except AdapterParseError as exc:
            found = dict(exc.parsed_result or {})
        for name in fields:
            if name not in found:
                found[name] = completion if name == fields[-1] else ""
        return found


def _lenient(parse):
    """A parse that leaves no field missing: an unreadable reply's last output field (the answer)
    is the whole completion, which the task's answer parser then reads or flags."""

    def lenient(self, signature, completion: str) -> dict[str, Any]:
        try:
            found = dict(parse(self, signature, completion))
        except AdapterParseError as exc:
            found = dict(exc.parsed_result or {})
        fields = list(signature.output_fields)
        for name in fields:
            if name not in found:
                found[name] = completion if name == fields[-1] else ""
        return found

    return lenient


class LenientJSONAdapter(dspy.JSONAdapter):
    """DSPy's JSON adapter (a JSON object with the output fields), parsed leniently. It asks for
    structured output where the provider supports it, as DSPy does; no retry in another format."""

    parse = _lenient(dspy.JSONAdapter.parse)


class LenientXMLAdapter(dspy.XMLAdapter):
    """DSPy's XML adapter (each output field in its own tag), parsed leniently, with no silent
    JSON-adapter retry (an uncounted second call)."""

    def __init__(self):
        super().__init__(use_json_adapter_fallback=False)

    parse = _lenient(dspy.XMLAdapter.parse)


def adapter_of(kind: str, prefill: bool = False):
    """The adapter of a config's `adapter` knob; `prefill` (a base model's text call style) only
    for chat, whose field markers a base model can continue."""
    if kind == "json":
        return LenientJSONAdapter()
    if kind == "xml":
        return LenientXMLAdapter()
    return LenientChatAdapter(prefill=prefill)
