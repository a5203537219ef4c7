"""prompt.fit: what a prompt leaves out when it does not fit (pure logic, no services)."""

from __future__ import annotations

from ragway.gateway.generation.prompt import fit


def test_a_prompt_that_fits_keeps_everything() -> None:
    plan = fit([10, 20, 20, 30], system=1, history_roles=["user", "assistant"], source_shares=[], budget=100)
    assert (plan.history_start, plan.sources, plan.prompt_tokens) == (0, 0, 80)


def test_history_is_cut_in_one_large_step_to_half_its_room() -> None:
    history = [50] * 10  # five exchanges
    roles = ["user", "assistant"] * 5
    plan = fit([10, *history, 40], system=1, history_roles=roles, source_shares=[], budget=450)
    # Room for history: 450 - 50 = 400; cut to at most 200 tokens, starting on a user turn.
    assert plan.history_start == 6
    assert plan.prompt_tokens == 10 + 4 * 50 + 40 <= 450


def test_the_cut_never_starts_on_an_answer() -> None:
    plan = fit(
        [5, 30, 100, 30, 100, 10],
        system=1,
        history_roles=["user", "assistant"] * 2,
        source_shares=[],
        budget=200,
    )
    assert plan.history_start in (2, 4)


def test_weakest_sources_go_once_the_history_is_gone() -> None:
    # The newest turn is 400 tokens, 80% of it four sources of 20% each.
    plan = fit([10, 400], system=1, history_roles=[], source_shares=[0.2, 0.2, 0.2, 0.2], budget=300)
    assert plan.sources == 2
    assert plan.prompt_tokens == 410 - 160


def test_a_turn_too_long_even_without_sources_keeps_what_it_can() -> None:
    plan = fit([10, 1000], system=1, history_roles=[], source_shares=[0.1], budget=100)
    assert plan.sources == 0 and plan.prompt_tokens > 100  # the model service refuses it by size
