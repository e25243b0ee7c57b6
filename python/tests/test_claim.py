"""``Inbox.claim``: a claim as a context manager, settled exactly as ``process`` settles."""

import pytest

import oncely


def test_the_effect_runs_once_and_duplicates_see_the_result():
    inbox = oncely.Inbox("memory", "claims")
    effects = []
    for _ in range(3):
        with inbox.claim("order-1", b"{}") as claim:
            if claim.claimed:
                effects.append("charged")
                claim.result = b"receipt-1"
    assert effects == ["charged"]
    with inbox.claim("order-1", b"{}") as claim:
        assert (claim.outcome, claim.result) == ("duplicate", b"receipt-1")


def test_an_exception_gives_the_id_back_and_propagates():
    inbox = oncely.Inbox("memory", "claims")
    with pytest.raises(TimeoutError):
        with inbox.claim("order-2") as claim:
            assert claim.claimed
            raise TimeoutError("bank did not answer")
    with inbox.claim("order-2") as claim:
        assert claim.claimed, "a retryable failure released the id"
        claim.result = b"ok"


def test_a_permanent_failure_is_stored_by_policy():
    inbox = oncely.Inbox("memory", "claims", cache_policy="success_and_failure")
    with pytest.raises(oncely.Permanent):
        with inbox.claim("order-3") as claim:
            raise oncely.Permanent("card declined")
    with inbox.claim("order-3") as claim:
        assert (claim.outcome, claim.begun.status) == ("duplicate", "failed")


def test_a_held_id_is_reported_not_claimed():
    inbox = oncely.Inbox("memory", "claims")
    first = inbox.begin("order-4")
    with inbox.claim("order-4") as claim:
        assert claim.outcome == "in_progress" and not claim.claimed
    first.ticket.finish(b"done")
