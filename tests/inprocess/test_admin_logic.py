"""The admin API's key changes on the real gateway (real SQLite), in process."""

from __future__ import annotations

import pytest

from tests.inprocess.conftest import ADMIN_KEY, InProcess

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def _new_key(inprocess: InProcess) -> str:
    user = inprocess.client.post("/v1/admin/users", json={"name": "keyholder", "credits": 1}, headers=ADMIN)
    key = inprocess.client.post(
        "/v1/admin/keys",
        json={"user_id": user.json()["id"], "name": "ci", "rpm_limit": 10, "budget": 5},
        headers=ADMIN,
    )
    return str(key.json()["id"])


@pytest.mark.parametrize("field", ["name", "budget_period"])
def test_patching_a_key_with_a_null_required_field_is_a_400_naming_it(
    inprocess: InProcess, field: str
) -> None:
    key_id = _new_key(inprocess)
    reply = inprocess.client.patch(f"/v1/admin/keys/{key_id}", json={field: None}, headers=ADMIN)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["param"] == field and error["type"] == "invalid_request_error"
    assert "leave it out" in error["message"]
    after = inprocess.client.get("/v1/admin/keys", headers=ADMIN).json()["data"]
    assert [(k["name"], k["budget_period"]) for k in after if k["id"] == key_id] == [("ci", "month")]


def test_patching_a_key_with_null_limits_removes_them_and_left_out_fields_stay(inprocess: InProcess) -> None:
    key_id = _new_key(inprocess)
    reply = inprocess.client.patch(
        f"/v1/admin/keys/{key_id}", json={"rpm_limit": None, "budget": None}, headers=ADMIN
    )
    assert reply.status_code == 200, reply.text
    key = reply.json()
    assert (key["rpm_limit"], key["budget"], key["name"], key["budget_period"]) == (None, None, "ci", "month")
