"""Scoring by probability: what an endpoint can return, and how to read it.

Two capabilities, each checked before any task call (`check_model`):

- **Top log-probabilities of the next token** (`letter_logprob`): the chat API's `logprobs` /
  `top_logprobs`, which OpenAI, vLLM and llama.cpp's server return. A hosted model whose LiteLLM
  entry does not list `logprobs` (Anthropic's, OpenAI's reasoning models) is refused.
- **Log-probabilities of given text** (`cloze`): the log-likelihood of an option's text as the
  continuation of a context. Chat APIs never return them, so a hosted model without `--api-base`
  is refused. Two protocols serve it:
  - `echo`: the completions API with `echo=true, logprobs=1` (vLLM and other servers that
    return prompt log-probabilities), through LiteLLM; one call per option;
  - `llama.cpp`: llama-server refuses `echo`, so the option's tokens (from its `/tokenize`) are
    forced one by one with a token grammar and read back with `n_probs`, which the server
    computes from the raw logits before sampling: the exact log-probability of each option
    token, per request, without the server's all-logits mode. One call per option, decoding
    the option's tokens after the shared context (which the slot's prompt cache keeps).
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from promptopt.errors import UserError
from promptopt.models import Model, current_log, redact_url


def hosted_supports_logprobs(model: Model) -> bool:
    import litellm

    try:
        return "logprobs" in (litellm.get_supported_openai_params(model=model.litellm_model) or [])
    except Exception:
        return False


def supports_reasoning(model: Model) -> bool:
    """Whether LiteLLM lists the model as taking a reasoning effort (o-series, GPT-5, Claude 4...)."""
    if model.is_local:
        return False
    import litellm

    try:
        return bool(litellm.supports_reasoning(model=model.litellm_model))
    except Exception:
        return False


def check_model(model: Model, needs: frozenset[str], strategy: str) -> None:
    """Refuse, in one sentence and before any call, a model that cannot give what `needs` names."""
    if "logprobs" in needs and not model.is_local and not model.api_base and not hosted_supports_logprobs(model):
        raise UserError(
            f"Strategy {strategy!r} reads the next token's log-probabilities, which model {model.name} does not "
            "return (LiteLLM lists no logprobs support for it); use a model that returns them (e.g. "
            "openai/gpt-4o-mini, a vLLM or llama.cpp server via --api-base, or local/gemma-3-270m)."
        )
    if "prompt_logprobs" in needs and not model.is_local and not model.api_base:
        raise UserError(
            f"Strategy {strategy!r} needs the log-probabilities of given text, which model {model.name}'s hosted "
            "chat API does not return; serve the model on vLLM or llama.cpp and point --api-base at its "
            "completions endpoint, or use local/gemma-3-270m."
        )


def check_reasoning_effort(model: Model, config_id: str) -> None:
    if not supports_reasoning(model):
        raise UserError(
            f"Config {config_id} sets reasoning_effort, which model {model.name} does not take (LiteLLM lists no "
            "reasoning support for it); drop the knob for this model or use a reasoning model such as "
            "openai/o4-mini."
        )


# ---------------------------------------------------------------- next-token distribution


def top_logprobs(output: Any) -> list[tuple[str, float]] | None:
    """(token, logprob) pairs at the first generated position of a chat completion, or None when
    the endpoint returned none."""
    lp = output.get("logprobs") if isinstance(output, dict) else None
    if lp is None:
        return None
    content = lp.get("content") if isinstance(lp, dict) else getattr(lp, "content", None)
    if not content:
        return None
    first = content[0]
    tops = first.get("top_logprobs") if isinstance(first, dict) else getattr(first, "top_logprobs", None)
    pairs = []
    for entry in tops or []:
        token = entry.get("token") if isinstance(entry, dict) else getattr(entry, "token", None)
        logprob = entry.get("logprob") if isinstance(entry, dict) else getattr(entry, "logprob", None)
        if token is not None and logprob is not None:
            pairs.append((str(token), float(logprob)))
    return pairs or None


def letter_distribution(pairs: list[tuple[str, float]], letters: list[str]) -> tuple[dict[str, float], float]:
    """The probability of each option letter among the top tokens, normalized over the letters,
    and the raw probability mass the letters had. A token counts for a letter when, stripped of
    spaces and of one bracket or full stop around it, it is that letter (" B", "B", "(B", "B.");
    variants add up. Letters outside the top tokens get 0."""
    mass = dict.fromkeys(letters, 0.0)
    for token, logprob in pairs:
        key = token.strip()
        key = key.removeprefix("(").removesuffix(")").removesuffix(".").removesuffix(":").strip()
        if key in mass:
            mass[key] += math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return {}, 0.0
    return {letter: p / total for letter, p in mass.items()}, total


# ---------------------------------------------------------------- log-likelihood of given text

_protocols: dict[str, str] = {}
_protocols_lock = threading.Lock()


def _root(api_base: str) -> str:
    base = api_base.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


def _post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def protocol(model: Model) -> str:
    """How this endpoint gives text log-probabilities: "llama.cpp" or "echo" (asked once per
    endpoint with a tiny request; neither is one sentence)."""
    if model.is_local:
        return "llama.cpp"
    base = model.api_base or ""
    with _protocols_lock:
        if base in _protocols:
            return _protocols[base]
    found, answered = None, False
    try:
        with urllib.request.urlopen(f"{_root(base)}/props", timeout=model.timeout_s) as resp:
            answered = True
            if "default_generation_settings" in json.loads(resp.read()):
                found = "llama.cpp"
    except urllib.error.HTTPError:
        answered = True
    except Exception:
        pass
    if found is None:
        try:
            if _echo(model, "Yes", probe=True):
                found = "echo"
            answered = True
        except Exception as exc:
            import litellm

            reached = not isinstance(exc, litellm.APIConnectionError | litellm.Timeout)
            answered = answered or (reached and getattr(exc, "status_code", None) is not None)
    if found is None and not answered:
        raise UserError(f"Could not connect to {redact_url(base)} for model {model.name}; check --api-base.")
    if found is None:
        raise UserError(
            f"Strategy 'cloze' needs the log-probabilities of given text, which the endpoint "
            f"{redact_url(base)} for model {model.name} does not return (it is neither llama.cpp's server nor "
            "a completions API that echoes prompt log-probabilities, as vLLM's does); use such a server."
        )
    with _protocols_lock:
        _protocols[base] = found
    return found


def _count(calls: int, prompt_tokens: int, completion_tokens: int, sent: dict | None = None) -> None:
    log = current_log.get()
    if log is not None:
        if sent is not None:
            log.sent.append(sent)
        log.calls += calls
        log.prompt_tokens += prompt_tokens
        log.completion_tokens += completion_tokens


def _echo(model: Model, text: str, probe: bool = False) -> dict | None:
    """The completions API's echoed log-probabilities of `text` (through LiteLLM)."""
    import litellm

    kwargs: dict[str, Any] = dict(
        model=model.litellm_model, prompt=text, echo=True, logprobs=1, max_tokens=1, temperature=0.0,
        timeout=model.timeout_s,
    )  # fmt: skip
    if model.api_base:
        kwargs["api_base"] = model.api_base
        if model.litellm_model.startswith("openai/"):
            import os

            kwargs["api_key"] = os.environ.get("OPENAI_API_KEY") or "no-key-needed"
    resp = litellm.text_completion(**kwargs)
    choice = resp.choices[0]
    lp = choice.get("logprobs") if isinstance(choice, dict) else getattr(choice, "logprobs", None)
    if lp is not None and not isinstance(lp, dict):
        lp = lp.model_dump() if hasattr(lp, "model_dump") else dict(lp)
    if not probe:
        usage = getattr(resp, "usage", None)
        _count(1, int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0),
               {"prompt": text, "echo": True})  # fmt: skip
    return lp if lp and lp.get("token_logprobs") else None


def _with_retries(model: Model, fn):
    for attempt in range(model.num_retries + 1):
        try:
            return fn()
        except UserError:
            raise
        except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as exc:
            if isinstance(exc, urllib.error.HTTPError) and exc.code < 500 and exc.code != 429:
                raise
            if attempt == model.num_retries:
                raise
            time.sleep(min(60.0, model.backoff_s * 2**attempt))


def continuation_logprob(model: Model, context: str, continuation: str) -> tuple[float, int]:
    """log P(continuation | context) and the continuation's token count, on this endpoint."""
    if protocol(model) == "llama.cpp":
        return _with_retries(model, lambda: _llama_cpp(model, context, continuation))
    lp = _with_retries(model, lambda: _echo(model, context + continuation))
    if lp is None:
        raise UserError(
            f"The endpoint for model {model.name} returned no prompt log-probabilities for a cloze call; "
            "strategy 'cloze' needs a server that echoes them (vLLM, llama.cpp's server)."
        )
    offsets, logprobs = lp.get("text_offset") or [], lp.get("token_logprobs") or []
    start, end = len(context), len(context) + len(continuation)  # not the one token generated after it
    picked = [p for off, p in zip(offsets, logprobs, strict=False) if start <= off < end and p is not None]
    if not picked:
        raise UserError(f"The endpoint for model {model.name} echoed no tokens for the option text {continuation!r}.")
    return float(sum(picked)), len(picked)


def _llama_cpp(model: Model, context: str, continuation: str) -> tuple[float, int]:
    root = _root(model.api_base or "")
    tokens = _post(f"{root}/tokenize", {"content": continuation, "add_special": False}, model.timeout_s)["tokens"]
    if not tokens:
        return 0.0, 0
    grammar = "root ::= " + " ".join(f"<[{int(t)}]>" for t in tokens)
    body = {
        "prompt": context, "n_predict": len(tokens), "grammar": grammar, "n_probs": 1, "temperature": 0.0,
        "cache_prompt": True, "post_sampling_probs": False,
    }  # fmt: skip
    out = _post(f"{root}/completion", body, model.timeout_s)
    probs = out.get("completion_probabilities") or []
    got = [int(p.get("id", -1)) for p in probs]
    if got != [int(t) for t in tokens]:
        raise RuntimeError(f"llama.cpp forced {got} instead of the option's tokens {tokens}")
    _count(1, int(out.get("tokens_evaluated") or 0), int(out.get("tokens_predicted") or len(tokens)),
           {"prompt": context, "forced": continuation})  # fmt: skip
    return float(sum(float(p["logprob"]) for p in probs)), len(tokens)
