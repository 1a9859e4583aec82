"""Sentence embeddings and cosine similarities (sentence-transformers), with micro-batching.

model.py loads and runs the model, batcher.py gathers concurrent requests into batches,
similarity.py is the math, embedder.py ties them together per model, entry.py registers it.
Importing this package does not import torch.
"""
