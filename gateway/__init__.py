"""Tandem: an OpenAI-compatible gateway making a small and a large language model work as one.

One request runs down the layers, and imports only run down them:

    server/   the `tandem` command and the ASGI app (assembles everything below)
    api/      thin HTTP handlers: parse, authenticate, resolve the alias, hand over to a policy
    policies/ direct, collab, hawkeye: a request in, a stream of typed events out
    backends/ one model each (transformers, mlx, vllm, openai over HTTP, echo), token sessions
    core/     protocol, events, errors, catalog, request rules, registries, tokenizer facts

Beside them: stores/ (cache and limits), observability/ (metrics, traces, logs), models/ (model
sources and their preparation), chat/ (the terminal client) and playground/ (the browser page).
"""
