from labs_core.engine.stops import StopStringMatcher


def run(stops, pieces):
    m = StopStringMatcher(stops)
    out, hit = [], None
    for piece in pieces:
        text, hit = m.feed(piece)
        out.append(text)
        if hit:
            break
    if not hit:
        out.append(m.flush())
    return "".join(out), hit


def test_stop_split_across_pieces_is_not_emitted():
    assert run(["END"], ["hello E", "N", "D more"]) == ("hello ", "END")


def test_partial_prefix_is_held_then_released():
    m = StopStringMatcher(["###"])
    assert m.feed("a#") == ("a", None)
    assert m.feed("b") == ("#b", None)


def test_earliest_stop_wins_and_no_stops_passthrough():
    assert run(["xy", "b"], ["a", "bxy"]) == ("a", "b")
    assert run([], ["a", "b"]) == ("ab", None)


def test_every_split_point_of_a_stop_string():
    text = "The answer is 42.\nUser: next"
    for cut in range(1, len(text)):
        assert run(["\nUser:"], [text[:cut], text[cut:]]) == ("The answer is 42.", "\nUser:")


def test_stop_disallowed_before_min_tokens_is_emitted():
    m = StopStringMatcher(["x"])
    assert m.feed("axb", allow_stop=False) == ("axb", None)
    assert m.feed("cx") == ("c", "x")
