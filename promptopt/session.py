"""Session: a model made ready to call — its endpoint reachable (the embedded server started),
its LM client and adapter built, and how many examples it scores at once.

Everything that calls a model goes through here, so a run, a search, a compile and a loaded
program bind a model the same way.
"""

from __future__ import annotations

import contextlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from promptopt.errors import UserError
from promptopt.models import Model, redact_url, with_endpoint


def check_endpoint(model: Model) -> None:
    """Fail fast, in one sentence, when an OpenAI-compatible endpoint cannot be reached."""
    if not model.api_base:
        return
    import base64
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(model.api_base)
    netloc = parts.netloc.rpartition("@")[2]  # credentials go in a header, as the LM client sends them
    url = urlunsplit((parts.scheme, netloc, f"{parts.path.rstrip('/')}/models", parts.query, ""))
    request = urllib.request.Request(url)
    if parts.username:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError:
        return  # it answered; auth or routing problems surface on the first call
    except Exception as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(
            f"Could not reach --api-base {redact_url(model.api_base)} for model {model.name} ({reason}); "
            "check that the server is running and the URL ends in its API root, e.g. http://127.0.0.1:8000/v1."
        ) from None


def threads_for(threads: int | None, model: Model) -> int:
    """Examples scored at once on this model: --threads, else as many as the embedded server
    decodes together, else 1 (a hosted API's rate limits are the user's to raise)."""
    if threads:
        return threads
    if model.is_local and not model.api_base:
        from promptopt.server import SLOTS

        return SLOTS
    return 1


@contextlib.contextmanager
def endpoint(model: Model, log: Path | None = None, parallel: int = 1) -> Iterator[Model]:
    """The model ready to call: embedded models get a running local server for the duration,
    with room for `parallel` requests at once."""
    if model.is_local and not model.api_base:
        from promptopt.server import local_server

        with local_server(log=log, parallel=parallel) as url:
            yield with_endpoint(model, url)
        return
    check_endpoint(model)
    yield model


def adapter_for(model: Model, knobs: dict | None = None):
    """The adapter a config's knobs ask for (`adapter`: chat by default) on this model."""
    from promptopt.adapters import adapter_of

    return adapter_of((knobs or {}).get("adapter") or "chat", prefill=model.call_style == "text")
