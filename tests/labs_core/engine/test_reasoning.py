from labs_core.engine.reasoning import ReasoningSplitter


def split(pieces, in_reasoning=False):
    s = ReasoningSplitter(in_reasoning=in_reasoning)
    content, reasoning = [], []
    for p in pieces:
        c, r = s.feed(p)
        content.append(c)
        reasoning.append(r)
    c, r = s.flush()
    return "".join(content) + c, "".join(reasoning) + r


def test_think_block_split_with_tags_across_chunks():
    text = "<think>step one, step two</think>\n\nThe answer."
    for cut in range(1, len(text)):
        assert split([text[:cut], text[cut:]]) == ("The answer.", "step one, step two")


def test_prompt_opened_reasoning():
    assert split(["plan", "</th", "ink>Done"], in_reasoning=True) == ("Done", "plan")


def test_tag_in_middle_of_answer_is_left_alone():
    assert split(["Use the ", "<think> tag"]) == ("Use the <think> tag", "")


def test_unclosed_reasoning_stays_reasoning():
    assert split(["<think>never ends"]) == ("", "never ends")
