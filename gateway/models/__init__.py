"""Model sources (hub id, folder, GGUF file, PyPI-carried) and their one-time preparation."""

from gateway.models.errors import ModelError
from gateway.models.prepare import Prepared, prepare, tandem_home
from gateway.models.sources import PACKAGED, Source, resolve

__all__ = ["PACKAGED", "ModelError", "Prepared", "Source", "prepare", "resolve", "tandem_home"]
