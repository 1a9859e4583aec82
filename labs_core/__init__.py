"""labs core: the gRPC server that owns the models (engine, embeddings, finance).

Importing this package is cheap and torch-free: the gateway and the CLI use labs_core.config and
labs_core.proto; everything that needs torch imports it inside the modules that use it.
"""

__version__ = "0.1.0"
