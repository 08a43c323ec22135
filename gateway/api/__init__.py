"""HTTP layer: thin handlers that parse, resolve the alias and hand the request to a policy."""
