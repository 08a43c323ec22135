"""The core every layer stands on: the wire protocol, typed events, the error tree, the catalog,
request-level rules (sampling settings, refused fields), registries, tokenizer facts, SSE lines.

Nothing here imports from another part of Tandem.
"""
