"""Generation servicer: proto in, engine events out, nothing else."""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

import grpc

from labs_core import hops
from labs_core.engine.outputs import RequestDone
from labs_core.errors import ModelUnavailable
from labs_core.models.registry import CHAT
from labs_core.proto import generation_pb2, generation_pb2_grpc
from labs_core.services import convert
from labs_core.services.state import CoreState
from labs_core.structured.tools import read_tool_calls

log = logging.getLogger(__name__)
# Prompts up to this many characters are templated and tokenized on the event loop (well under a
# millisecond); longer ones in a thread, so that the loop serves every other stream meanwhile.
INLINE_PREPARE_CHARS = 8192


class GenerationServicer(generation_pb2_grpc.GenerationServicer):
    def __init__(self, state: CoreState):
        self.state = state

    async def Generate(self, request: generation_pb2.GenerateRequest,
                       context: grpc.aio.ServicerContext) -> AsyncIterator[generation_pb2.GenerateResponse]:
        if self.state.draining:
            raise ModelUnavailable("the server is shutting down; retry on another core", retry_after_s=1.0)
        rid = convert.request_id(request.request_id, context.invocation_metadata() or ())
        if hops.ON:
            hops.stamp("S0", rid)
        chat = convert.chat_request(request, rid, self.state.settings.sampling)
        entry = self.state.registry.find(request.model, CHAT)
        self.state.active_streams += 1
        try:
            finance = self.state.extras.get("finance_chat")
            # Exact answers need no model; a structured ask (format, tools) is the model's to answer.
            if finance is not None and chat.messages is not None and chat.structured is None:
                answered = await finance.maybe_answer(chat.messages, request, rid, entry.name)
                if answered is not None:
                    for message in answered:
                        yield message
                    return
            model = await self.state.registry.get(entry.name, CHAT)
            # Schemas, regexes and grammars are parsed in a thread too (milliseconds for a big schema).
            if chat.text_size() <= INLINE_PREPARE_CHARS and chat.structured is None:
                prepared = model.prepare(chat)
            else:
                prepared = await asyncio.to_thread(model.prepare, chat)
            if hops.ON:
                hops.stamp("S1", rid)
            first = True
            async for event in read_tool_calls(model.backend.generate(prepared), prepared.tool_parsing):
                if isinstance(event, RequestDone):
                    yield convert.done_response(event, rid, entry.name)
                else:
                    response = convert.delta_response(event, rid, entry.name)
                    if first:  # (a caller that cancels before the usage can still account the prompt)
                        response.prompt_tokens = len(prepared.prompt_ids)
                        if hops.ON:
                            hops.stamp("S4", rid)
                        first = False
                    yield response
        finally:
            self.state.active_streams -= 1

    async def Tokenize(self, request: generation_pb2.TokenizeRequest,
                       context: grpc.aio.ServicerContext) -> generation_pb2.TokenizeResponse:
        entry = self.state.registry.find(request.model, CHAT)
        model = await self.state.registry.get(entry.name, CHAT)
        ids = await asyncio.to_thread(  # megabytes of text take seconds: not on the event loop
            model.tokenize, text=None if request.messages else request.text,
            messages=convert.messages(request.messages) if request.messages else None,
            add_special_tokens=request.add_special_tokens, tools=convert.tools(request.tools))
        return generation_pb2.TokenizeResponse(
            token_ids=ids, count=len(ids), max_model_len=model.max_model_len, model=entry.name,
            tokens=model.token_strings(ids) if request.return_tokens else [])

