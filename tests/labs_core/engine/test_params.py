import math

import pytest

from labs_core.engine.params import SamplingParams
from labs_core.errors import InvalidRequest


@pytest.mark.parametrize("field,value", [
    ("temperature", -0.1), ("temperature", math.nan), ("temperature", math.inf), ("top_p", 0.0), ("top_p", 1.5),
    ("top_k", -1), ("min_p", 2.0), ("repetition_penalty", 0.0), ("presence_penalty", 3.0),
    ("frequency_penalty", -2.5), ("n", 0), ("n", 1000), ("top_logprobs", 21), ("max_tokens", 0),
    ("stop", ("",)), ("stop", tuple(str(i) for i in range(10_000))),
    ("logit_bias", ((5, 100.5),)), ("logit_bias", ((5, math.nan),)), ("logit_bias", ((-1, 1.0),)),
    ("logit_bias", tuple((i, 1.0) for i in range(1025))),
])
def test_bad_values_name_the_field(field, value):
    with pytest.raises(InvalidRequest) as info:
        SamplingParams(**{field: value})
    assert info.value.param == field


def test_greedy():
    assert SamplingParams(temperature=0).greedy and SamplingParams(top_k=1).greedy
    assert not SamplingParams(temperature=0.5).greedy
