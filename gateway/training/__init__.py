"""Offline work beside the server: `tandem router collect|train|calibrate`.

It drives the same backends and token sessions as the policies, so that a router is trained on
exactly what the server runs. Imported only by those commands; torch only by `train`.
"""
