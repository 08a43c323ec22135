"""The process: the `tandem` command and the ASGI app that assembles state, stores and the api."""
