"""The inference engine: continuous batching over a paged KV cache. Knows nothing of gRPC or HTTP.

Pure-Python bookkeeping (sequence, block_manager, scheduler, params, outputs, detokenizer, stops,
reasoning) is apart from the torch code (model_runner, attention, sampler) so that it is testable
without a model; engine.py ties one step together and async_engine.py serves it to asyncio.
"""
