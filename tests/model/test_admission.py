"""Admission control in isolation (pure logic, no engine)."""

from __future__ import annotations

import pytest

from ragway.core.errors import ResourceExhausted, Unavailable
from ragway.model.admission import Admission


def test_admits_up_to_running_plus_waiting_then_refuses() -> None:
    admission = Admission(max_running=2, max_waiting=1)
    with admission.admit(), admission.admit(), admission.admit():
        assert admission.waiting == 1
        with pytest.raises(ResourceExhausted), admission.admit():
            pass
    assert admission.in_flight == 0


def test_n_choices_take_n_slots() -> None:
    admission = Admission(max_running=2, max_waiting=0)
    with pytest.raises(ResourceExhausted), admission.admit(3):
        pass


def test_closed_admission_refuses_as_unavailable() -> None:
    admission = Admission(max_running=2, max_waiting=2)
    admission.closed = True
    with pytest.raises(Unavailable), admission.admit():
        pass
