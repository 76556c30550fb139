"""The server promptopt used for the embedded model before llama-server, kept to measure against.

benchmarks/model_throughput.py runs it as a script (it needs `pip install
"llama-cpp-python[server]==0.3.36"`). It is llama-cpp-python's own OpenAI-compatible server,
which serves one request at a time, plus one chat format, `promptopt-plain`:
the messages' texts joined by blank lines, with no chat template. Gemma 3 270M is a *base*
model; given its instruction template it rarely answers in a parseable form, given plain text
that ends in a cue ("Answer:", a field marker) it continues it. Clients still speak the chat
API, so DSPy, LiteLLM and the call accounting work exactly as for hosted models.
"""

from llama_cpp import llama_chat_format as chat_format


@chat_format.register_chat_format("promptopt-plain")
def plain(messages, **_kwargs) -> chat_format.ChatFormatterResponse:
    texts = []
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if content:
            texts.append(content)
    return chat_format.ChatFormatterResponse(prompt="\n\n".join(texts))


if __name__ == "__main__":
    from llama_cpp.server.__main__ import main

    main()
