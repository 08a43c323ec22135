"""Tandem: an OpenAI-compatible gateway making a small and a large language model work as one."""
