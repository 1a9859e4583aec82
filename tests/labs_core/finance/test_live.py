"""Finance.Query and the chat short-circuit through a live core over gRPC."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import grpc
import pytest

from labs_core.proto import finance_pb2, finance_pb2_grpc, generation_pb2_grpc
from labs_core.proto import generation_pb2 as g
from tests.labs_core.finance import reference as R
from tests.labs_core.finance.reference import money, pick, spend
from tests.support import CoreThread, core_settings

pytestmark = pytest.mark.slow
QUESTION = "How much did I spend on software last quarter?"


def software_q3_2025() -> Decimal:
    return spend(pick(date(2025, 7, 1), date(2025, 9, 30), category="Software"))


@pytest.fixture(scope="module")
def core(tiny_llama_dir):
    with CoreThread(core_settings(tiny_llama_dir, model={"served_name": "tiny"},
                                  finance={"finance_csv": str(R.CSV)})) as server:
        yield server


@pytest.fixture(scope="module")
def core_chat_off(tiny_llama_dir):
    with CoreThread(core_settings(tiny_llama_dir, finance={"finance_csv": str(R.CSV), "finance_chat": False})) as s:
        yield s


@pytest.fixture(scope="module")
def core_no_data(tiny_llama_dir, tmp_path_factory):
    missing = tmp_path_factory.mktemp("nodata") / "missing.csv"
    with CoreThread(core_settings(tiny_llama_dir, finance={"finance_csv": str(missing)})) as server:
        yield server


def chat(address: str, text: str, **kwargs) -> list[g.GenerateResponse]:
    sampling = kwargs.pop("sampling", g.SamplingParams(max_tokens=4, temperature=0))
    with grpc.insecure_channel(address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        return list(stub.Generate(g.GenerateRequest(messages=[g.ChatMessage(role="user", content=text)],
                                                    sampling=sampling, **kwargs)))


def query(address: str, question: str, **kwargs) -> finance_pb2.FinanceQueryResponse:
    with grpc.insecure_channel(address) as channel:
        return finance_pb2_grpc.FinanceStub(channel).Query(finance_pb2.FinanceQueryRequest(question=question, **kwargs))


def test_query_rpc(core):
    response = query(core.address, QUESTION, max_rows=5)
    expected = software_q3_2025()
    assert response.understood and response.intent == "total_spend"
    assert response.HasField("value") and Decimal(str(response.value)) == expected
    assert response.currency == "USD" and money(expected) in response.answer
    filters = {f.name: f.value for f in response.filters}
    assert filters["category"] == "Software" and "2025-07-01 to 2025-09-30" in filters["period"]
    assert response.reference_date == "2025-12-31"
    assert len(response.rows) == 5 and response.row_count == len(
        pick(date(2025, 7, 1), date(2025, 9, 30), category="Software"))
    assert all(r.category == "Software" and r.currency == "USD" for r in response.rows)


def test_query_rpc_reference_date_and_breakdown(core):
    response = query(core.address, "Spending by category last quarter", reference_date="2025-02-10")
    assert response.reference_date == "2025-02-10"
    want = R.grouped(pick(date(2024, 10, 1), date(2024, 12, 31), where=lambda r: r.type in ("expense", "refund")),
                     lambda r: r.category, spend)
    assert {b.key: Decimal(str(b.value)) for b in response.breakdown} == want
    assert "against the reference date 2025-02-10" in response.answer


def test_query_rpc_not_understood(core):
    response = query(core.address, "Tell me a story about dragons")
    assert not response.understood and not response.HasField("value") and response.answer


@pytest.mark.parametrize("kwargs,param", [
    (dict(question=""), "question"),
    (dict(question=QUESTION, reference_date="31/12/2025"), "reference_date"),
])
def test_query_rpc_invalid_argument(core, kwargs, param):
    with grpc.insecure_channel(core.address) as channel, pytest.raises(grpc.RpcError) as info:
        finance_pb2_grpc.FinanceStub(channel).Query(finance_pb2.FinanceQueryRequest(**kwargs))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(info.value.trailing_metadata())["labs-error-param"] == param


def test_chat_finance_question_is_answered_from_the_data(core):
    responses = chat(core.address, QUESTION)
    assert all(r.source == g.ANSWER_SOURCE_FINANCE for r in responses)
    text = "".join(r.text for r in responses)
    assert money(software_q3_2025()) in text and "USD" in text
    assert len([r for r in responses if r.text]) > 1  # streamed in several chunks
    assert responses[0].finance.understood and Decimal(str(responses[0].finance.value)) == software_q3_2025()
    assert responses[0].finance.answer == text
    finals = [r for r in responses if r.finish_reason]
    assert len(finals) == 1 and finals[0].finish_reason == g.FINISH_REASON_STOP
    assert responses[-1].usage.completion_tokens > 0 and responses[-1].usage.total_tokens > 0
    assert responses[-1].model == "tiny"
    assert len({r.request_id for r in responses}) == 1


def test_chat_uses_only_the_last_user_message(core):
    with grpc.insecure_channel(core.address) as channel:
        stub = generation_pb2_grpc.GenerationStub(channel)
        history = [g.ChatMessage(role="user", content=QUESTION), g.ChatMessage(role="assistant", content="..."),
                   g.ChatMessage(role="user", content="Thanks! Now write a haiku about spring.")]
        responses = list(stub.Generate(g.GenerateRequest(messages=history, sampling=g.SamplingParams(max_tokens=4))))
    assert all(r.source == g.ANSWER_SOURCE_MODEL for r in responses)


def test_chat_n_choices_get_the_same_answer(core):
    responses = chat(core.address, QUESTION, sampling=g.SamplingParams(n=2))
    texts = {i: "".join(r.text for r in responses if r.index == i and not r.usage.total_tokens) for i in (0, 1)}
    assert texts[0] == texts[1] and money(software_q3_2025()) in texts[0]
    assert len([r for r in responses if r.finish_reason]) == 2


def test_chat_non_finance_goes_to_the_model(core):
    responses = chat(core.address, "Write a poem about money")
    assert all(r.source == g.ANSWER_SOURCE_MODEL for r in responses)
    assert not responses[0].HasField("finance")


def test_chat_finance_shortcut_false_goes_to_the_model(core):
    responses = chat(core.address, QUESTION, finance_shortcut=False)
    assert all(r.source == g.ANSWER_SOURCE_MODEL for r in responses)
    assert responses[-1].usage.completion_tokens == sum(len(r.token_ids) for r in responses)


def test_chat_setting_off_unless_the_request_asks(core_chat_off):
    assert all(r.source == g.ANSWER_SOURCE_MODEL for r in chat(core_chat_off.address, QUESTION))
    asked = chat(core_chat_off.address, QUESTION, finance_shortcut=True)
    assert all(r.source == g.ANSWER_SOURCE_FINANCE for r in asked)
    assert money(software_q3_2025()) in "".join(r.text for r in asked)


def test_missing_data_is_failed_precondition(core_no_data):
    with pytest.raises(grpc.RpcError) as info:
        query(core_no_data.address, QUESTION)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "does not exist" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        chat(core_no_data.address, QUESTION)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    # Everything else keeps working.
    assert all(r.source == g.ANSWER_SOURCE_MODEL for r in chat(core_no_data.address, "Hello there"))
