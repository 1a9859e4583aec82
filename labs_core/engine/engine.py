"""The engine: requests in, one step at a time (schedule, run, postprocess), events out.

Synchronous and single-threaded by design; async_engine.py drives it from asyncio. Knows nothing
of gRPC or HTTP.
"""

from __future__ import annotations

import logging
import random
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

from labs_core.engine.block_manager import BlockManager
from labs_core.engine.choice_stream import ChoiceStream
from labs_core.engine.detokenizer import token_text
from labs_core.engine.metrics import EngineMetrics
from labs_core.engine.model_runner import ModelRunner
from labs_core.engine.outputs import (RequestDone, StreamEvent, Timings, TokenLogprob, TopLogprob,
                                      Usage)
from labs_core.engine.reasoning import reasoning_gate
from labs_core.engine.request import EngineRequest
from labs_core.engine.sampler import SamplerOutput
from labs_core.engine.scheduler import ScheduledBatch, Scheduler, SchedulerConfig
from labs_core.engine.sequence import Sequence
from labs_core.errors import ContextTooLong, QueueFull

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    block_size: int = 16
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    max_model_len: int = 2048
    max_waiting: int = 256
    prefix_caching: bool = True
    # A short prompt arriving while others decode is prefilled in a step of its own (scheduler.py);
    # the builder sets it to the largest prefill CUDA graph, 0 elsewhere.
    lone_prefill_tokens: int = 0
    # Queue step N+1 on the device before step N's tokens are read (a decode step ahead), so that
    # the host's bookkeeping overlaps the GPU's work. None: on where the forward is asynchronous
    # (CUDA). The tokens are the same either way.
    run_ahead: bool | None = None


@dataclass
class InFlight:
    """A launched step whose tokens the host has not read yet."""

    batch: ScheduledBatch
    output: SamplerOutput | None
    # An ahead step with constrained rows: its forward is queued, its sampling waits until the
    # previous step's tokens have advanced the grammars (the masks need them).
    logits: Any = None


@dataclass
class RequestState:
    request: EngineRequest
    seqs: list[Sequence]
    streams: list[ChoiceStream]
    finished: int = 0
    first_token_time: float | None = None
    last_token_time: float | None = None
    done: bool = field(default=False)


def check_fits(request: EngineRequest, max_model_len: int, block_size: int, num_blocks: int) -> None:
    """Refuse a request that can never fit the context or the KV cache, whatever else is running."""
    total = len(request.prompt_ids) + request.params.max_tokens
    if total > max_model_len:
        raise ContextTooLong(f"prompt + max_tokens = {total} tokens is over the context length "
                             f"{max_model_len}", param="max_tokens")
    if -(-total // block_size) > num_blocks:
        raise ContextTooLong(f"{total} tokens do not fit this server's KV cache "
                             f"({num_blocks * block_size} tokens)", param="max_tokens")


class LLMEngine:
    def __init__(self, runner: ModelRunner, tokenizer: Any, config: EngineConfig, eos_token_ids: list[int]):
        self.runner = runner
        self.tokenizer = tokenizer
        self.config = config
        self.eos_token_ids = frozenset(eos_token_ids)
        self.blocks = BlockManager(runner.num_blocks, config.block_size, config.prefix_caching)
        self.scheduler = Scheduler(SchedulerConfig(config.max_num_seqs, config.max_num_batched_tokens,
                                                   config.max_model_len, config.lone_prefill_tokens), self.blocks)
        self.requests: dict[str, RequestState] = {}
        self.metrics = EngineMetrics()
        self.in_flight: InFlight | None = None
        self.run_ahead = config.run_ahead if config.run_ahead is not None else runner.device.type == "cuda"
        self.steps_ahead = 0  # steps launched ahead (a figure for tests and benchmarks)
        # Structured output: requests whose grammar is compiling (off the step loop), in arrival order.
        self.compiling: list[tuple[RequestState, Future]] = []
        self._grammars: Any = None

    # -- requests -------------------------------------------------------------------------------

    def validate(self, request: EngineRequest, pending: int = 0) -> None:
        """Refuse at once what cannot be admitted: a full queue (`pending` requests are queued but
        not yet added), or a request that can never fit the context or the KV cache."""
        if request.request_id in self.requests:
            raise ValueError(f"duplicate request id {request.request_id}")
        params = request.params
        free_slots = max(self.config.max_num_seqs - len(self.scheduler.running), 0)
        if len(self.scheduler.waiting) + pending + params.n > self.config.max_waiting + free_slots:
            self.metrics.requests_rejected += 1
            raise QueueFull(f"server busy: {len(self.scheduler.waiting) + pending} sequences waiting; "
                            "retry shortly", retry_after_s=1.0)
        check_fits(request, self.config.max_model_len, self.config.block_size, self.blocks.num_blocks)

    def add_request(self, request: EngineRequest) -> None:
        """Queue a request (validated first)."""
        self.validate(request)
        params = request.params
        base_seed = params.seed if params.seed is not None else random.getrandbits(62)
        seqs: list[Sequence] = []
        for index in range(params.n):
            seq = Sequence(request_id=request.request_id, choice_index=index, token_ids=list(request.prompt_ids),
                           params=params, seed=(base_seed + index * 0x9E3779B97F4A7C15) % (1 << 62),
                           arrival_time=request.arrival_time, waits_for=seqs[0] if seqs else None)
            seqs.append(seq)
        streams = [ChoiceStream(i, self.tokenizer, request.prompt_ids, params, request.reasoning,
                                request.prompt_text_tail, request.keep_special_tokens) for i in range(params.n)]
        state = self.requests[request.request_id] = RequestState(request, seqs, streams)
        if request.constraint is None:
            for seq in seqs:
                self.scheduler.add(seq)
        else:
            self.compiling.append((state, self.grammars.compile(request.constraint)))

    @property
    def grammars(self) -> Any:
        """The grammar compiler, built on the first constrained request (xgrammar imported then)."""
        if self._grammars is None:
            from labs_core.structured.grammar import GrammarBackend

            self._grammars = GrammarBackend(self.tokenizer, self.runner.vocab_size, self.eos_token_ids)
        return self._grammars

    def _admit_compiled(self) -> list[tuple[str, list[StreamEvent]]]:
        """Hand requests whose grammar is ready to the scheduler, each choice with its own matcher;
        when nothing else can run, wait briefly for the first compile instead of spinning."""
        if not self.compiling:
            return []
        events: list[tuple[str, list[StreamEvent]]] = []
        if not self.scheduler.has_work and self.in_flight is None:
            wait([future for _, future in self.compiling], timeout=0.01, return_when=FIRST_COMPLETED)
        still: list[tuple[RequestState, Future]] = []
        for state, future in self.compiling:
            if state.done:
                continue
            if not future.done():
                still.append((state, future))
                continue
            try:
                compiled = future.result()
            except Exception:  # spec.check parsed it already: this is an xgrammar failure
                log.exception("grammar compile failed for %s", state.request.request_id)
                events += self.abort_request(state.request.request_id)
                continue
            gate = reasoning_gate(self.tokenizer, state.request)
            for seq in state.seqs:
                seq.grammar = self.grammars.matcher(compiled, state.request.constraint, gate)
                self.scheduler.add(seq)
        self.compiling = still
        return events

    def abort_request(self, request_id: str) -> list[tuple[str, list[StreamEvent]]]:
        """Cancel a request: its sequences are freed now; returns its final events."""
        state = self.requests.get(request_id)
        if state is None:
            return []
        events: list[StreamEvent] = []
        for seq, stream in zip(state.seqs, state.streams):
            if not seq.is_finished:
                self.scheduler.finish(seq, "abort")
                events.append(stream.finish("abort"))
                state.finished += 1
        self.metrics.requests_aborted += 1
        events.append(self._done(state))
        return [(request_id, events)]

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work or self.in_flight is not None or bool(self.compiling)

    def fail_all(self) -> list[str]:
        """After a failed step: forget the launched step and abort every request; their ids."""
        self.in_flight = None
        failed = list(self.requests)
        for request_id in failed:
            self.abort_request(request_id)
        return failed

    # -- one step -------------------------------------------------------------------------------

    def step(self) -> list[tuple[str, list[StreamEvent]]]:
        """Run one step; returns the events of the step whose tokens were read. With run_ahead the
        step launched here is read on the next call, after the one after it has been queued."""
        events = self._admit_compiled()
        if self.in_flight is not None:
            previous, self.in_flight = self.in_flight, None
            ahead = self._launch_ahead(previous)
            events = self.postprocess(previous.batch, previous.output)
            if ahead is not None:
                if ahead.logits is not None:  # the grammars have the previous tokens now
                    ahead.output, ahead.logits = self.runner.sample(ahead.batch, ahead.logits), None
                self.in_flight = ahead
                return events
        batch = self.scheduler.schedule()
        if not batch.seqs:
            return events
        output = self.runner.run(batch)
        if self.run_ahead:
            self.in_flight = InFlight(batch, output)
            return events
        return events + self.postprocess(batch, output)

    def _launch_ahead(self, previous: InFlight) -> InFlight | None:
        """Queue the decode step that follows `previous` before its tokens are read: each sequence
        feeds the token it is drawing, straight from the device. Only when that is exactly the step
        the scheduler would pick: every sequence samples, nobody waits to be admitted, the blocks
        are there, and no penalty needs the token on the host. With constrained sequences only the
        forward is queued ahead; sampling follows once their grammars took the tokens (step()).
        Sequences that end by length in
        `previous` are left out; any that end otherwise have their ahead token dropped."""
        batch = previous.batch
        if previous.output is None or self.scheduler.waiting or batch.preempted:
            return None
        if not all(batch.samples(i) for i in range(len(batch.seqs))):
            return None
        launched = set(map(id, batch.seqs))
        if any(id(seq) not in launched for seq in self.scheduler.running):
            return None  # the token budget left someone out: the scheduler decides the next step
        rows, seqs = [], []
        for i, seq in enumerate(batch.seqs):
            p = seq.params
            if p.repetition_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
                return None
            if seq.is_finished or seq.num_generated + 1 >= p.max_tokens \
                    or seq.num_tokens + 1 >= self.config.max_model_len:
                continue
            rows.append(i)
            seqs.append(seq)
        if not seqs:
            return None
        need = sum(self.blocks.blocks_needed(seq, seq.num_tokens + 1) for seq in seqs)
        if not self.blocks.can_allocate(need):
            return None
        for seq in seqs:
            self.blocks.allocate(seq, seq.num_tokens + 1)
        ahead = ScheduledBatch(seqs, [1] * len(seqs), ahead=True)
        self.steps_ahead += 1
        ids = previous.output.tokens_at(rows)
        if any(seq.grammar is not None for seq in seqs):  # masks need the tokens being drawn: sample later
            return InFlight(ahead, None, logits=self.runner.forward(ahead, ahead_ids=ids))
        return InFlight(ahead, self.runner.run(ahead, ahead_ids=ids))

    def postprocess(self, batch: ScheduledBatch, output: SamplerOutput | None) -> list[tuple[str, list[StreamEvent]]]:
        output = output.on_host() if output is not None else None
        now = time.monotonic()  # the tokens are on the host from here
        sampled_ids = output.token_ids.tolist() if output is not None else []
        logprob_rows = self._logprob_rows(batch, output)
        events: dict[str, list[StreamEvent]] = {}
        row = 0
        prompt_tokens = generated = 0
        for i, seq in enumerate(batch.seqs):
            samples = batch.samples(i)
            if seq.is_finished:  # ended (stop, abort) while this step was in flight: drop its token
                row += int(samples)
                continue
            prompt_part = max(0, min(seq.num_prompt_tokens, seq.num_computed_tokens + batch.num_new_tokens[i])
                              - seq.num_computed_tokens)
            prompt_tokens += prompt_part
            seq.num_computed_tokens += batch.num_new_tokens[i]
            if not samples:
                self.blocks.register_computed(seq)
                continue
            token = sampled_ids[row]
            logprobs = logprob_rows[row] if logprob_rows else []
            row += 1
            seq.token_ids.append(token)
            if seq.grammar is not None and not seq.grammar.accept_token(token):
                log.warning("grammar refused token %d of %s (the mask allowed it)", token, seq.request_id)
            generated += 1
            self.blocks.register_computed(seq)
            state = self.requests[seq.request_id]
            if seq.first_token_time is None:
                seq.first_token_time = now
            else:
                self.metrics.inter_token_s.observe(now - (state.last_token_time or now))
            if state.first_token_time is None:
                state.first_token_time = now
                self.metrics.ttft_s.observe(now - state.request.arrival_time)
            state.last_token_time = now
            stream = state.streams[seq.choice_index]
            delta = stream.add([token], logprobs)
            if delta.finish_reason is None:
                reason = self._finish_reason(seq, token)
                if reason is not None:
                    stream.finish(reason, delta)
            if delta.finish_reason is not None:
                self.scheduler.finish(seq, delta.finish_reason)
                state.finished += 1
            out = events.setdefault(seq.request_id, [])
            out.append(delta)
            if state.finished == len(state.seqs):
                out.append(self._done(state))
        self.metrics.record_step(len(batch.seqs), prompt_tokens, generated)
        return list(events.items())

    def _finish_reason(self, seq: Sequence, token: int) -> str | None:
        params = seq.params
        if token in params.stop_token_ids or (token in self.eos_token_ids and not params.ignore_eos):
            return "stop"  # the sampler bans these before min_tokens
        if seq.grammar is not None and seq.grammar.is_terminated():
            return "stop"  # the grammar is complete and took a stop token (even with ignore_eos)
        if seq.num_generated >= params.max_tokens or seq.num_tokens >= self.config.max_model_len:
            return "length"
        return None

    def _logprob_rows(self, batch: ScheduledBatch, output: SamplerOutput | None) -> list[list[TokenLogprob]]:
        if output is None or output.logprobs is None:
            return []
        sampling = [s for i, s in enumerate(batch.seqs) if batch.samples(i)]
        chosen = output.token_ids.tolist()
        values = output.logprobs.tolist()
        top_ids = output.top_ids.tolist() if output.top_ids is not None else None
        top_values = output.top_logprobs.tolist() if output.top_logprobs is not None else None
        rows: list[list[TokenLogprob]] = []
        for r, seq in enumerate(sampling):
            if not seq.params.logprobs:
                rows.append([])
                continue
            entry = TokenLogprob(chosen[r], token_text(self.tokenizer, chosen[r]), values[r])
            k = seq.params.top_logprobs
            if k and top_ids is not None:
                entry.top = [TopLogprob(t, token_text(self.tokenizer, t), v)
                             for t, v in zip(top_ids[r][:k], top_values[r][:k])]
            rows.append([entry])
        return rows

    def _done(self, state: RequestState) -> RequestDone:
        """Usage and timings of a finished request; forgets it."""
        self.requests.pop(state.request.request_id, None)
        state.done = True
        now = time.monotonic()
        arrival = state.request.arrival_time
        first_scheduled = min((s.first_scheduled_time for s in state.seqs if s.first_scheduled_time), default=now)
        first_token = state.first_token_time or now
        completion = sum(s.num_generated for s in state.seqs)
        usage = Usage(prompt_tokens=len(state.request.prompt_ids), completion_tokens=completion,
                      cached_tokens=state.seqs[0].num_cached_tokens,
                      reasoning_tokens=sum(st.reasoning_tokens for st in state.streams))
        decode_time = now - first_token
        timings = Timings(
            queue_ms=(first_scheduled - arrival) * 1e3, ttft_ms=(first_token - arrival) * 1e3,
            total_ms=(now - arrival) * 1e3,
            prefill_tokens_per_s=usage.prompt_tokens / max(first_token - first_scheduled, 1e-9),
            decode_tokens_per_s=max(completion - len(state.seqs), 0) / decode_time if decode_time > 0 else 0.0)
        self.metrics.requests_finished += 1
        self.metrics.cached_tokens_total += usage.cached_tokens
        return RequestDone(usage, timings)

    def stats(self) -> dict[str, float]:
        prompt_tps, gen_tps = self.metrics.throughput()
        return {
            "running": len(self.scheduler.running), "waiting": len(self.scheduler.waiting),
            "kv_blocks_total": self.blocks.num_blocks, "kv_blocks_used": self.blocks.num_used_blocks,
            "prefix_cache_hit_rate": self.blocks.hit_rate, "prompt_tokens_per_s": prompt_tps,
            "generation_tokens_per_s": gen_tps, "requests_finished": self.metrics.requests_finished,
            "requests_rejected": self.metrics.requests_rejected,
            "prompt_tokens_total": self.metrics.prompt_tokens_total,
            "generation_tokens_total": self.metrics.generation_tokens_total,
            "preemptions_total": self.scheduler.num_preemptions, "block_size": self.config.block_size,
        }
