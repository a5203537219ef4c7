"""Users, keys, credits and usage as the admin API takes and shows them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from ragway.gateway.accounts.protocol import UsageDayOut
from ragway.gateway.core.wire import StrictModel


class AdminUsageOut(BaseModel):
    """Usage of one user, one key, or (neither given) everyone."""

    object: Literal["usage"] = "usage"
    user_id: str | None
    key_id: str | None
    data: list[UsageDayOut]


class UserCreate(StrictModel):
    name: str = Field(min_length=1, max_length=200)
    role: Literal["admin", "user"] = "user"
    credits: float = Field(0.0, ge=0, le=1e9)


class UserOut(BaseModel):
    id: str
    name: str
    role: str
    credits: float
    created_at: int
    disabled: bool


class UserList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UserOut]


class KeyCreate(StrictModel):
    user_id: str = Field(min_length=1, max_length=64)
    name: str = Field("", max_length=200)
    expires_at: int | None = Field(None, ge=0, le=2**40, description="Unix seconds.")
    rpm_limit: int | None = Field(None, ge=1, le=10**9)
    tpm_limit: int | None = Field(None, ge=1, le=10**12)
    budget: float | None = Field(None, ge=0, le=1e9, description="Credits per budget_period.")
    budget_period: Literal["day", "month"] = "month"


class KeyUpdate(StrictModel):
    """A PATCH: a field left out stays as it is; null removes a limit, budget or expiry. A key
    always has a name and a budget period, so null for those is refused, not stored."""

    name: str | None = Field(None, max_length=200)
    rpm_limit: int | None = Field(None, ge=1, le=10**9)
    tpm_limit: int | None = Field(None, ge=1, le=10**12)
    budget: float | None = Field(None, ge=0, le=1e9)
    budget_period: Literal["day", "month"] | None = None
    expires_at: int | None = Field(None, ge=0, le=2**40)

    @field_validator("name", "budget_period", mode="before")
    @classmethod
    def _not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("cannot be null; leave it out to keep the key's current value")
        return value


class KeyOut(BaseModel):
    id: str
    user_id: str
    name: str
    display: str = Field(description="The prefix and the last four characters, never the whole key.")
    created_at: int
    expires_at: int | None
    revoked: bool
    rpm_limit: int | None
    tpm_limit: int | None
    budget: float | None
    budget_period: str


class KeyCreated(KeyOut):
    key: str = Field(description="The whole key. Shown this once; store it now.")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyOut]


class TopUp(StrictModel):
    amount: float = Field(gt=0, le=1e9, description="Credits to add.")


class TopUpOut(BaseModel):
    id: int
    user_id: str
    amount: float
    balance: float | None
    created_at: int
