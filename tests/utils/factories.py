"""Users and keys made through the real admin API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import openai


@dataclass
class Account:
    user_id: str
    key_id: str
    key: str
    base_url: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=self.headers, timeout=120)

    def openai(self, **kwargs: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key=self.key, max_retries=0, **kwargs)

    def async_openai(self, **kwargs: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.base_url}/v1", api_key=self.key, max_retries=0, **kwargs)


def make_account(base_url: str, admin_key: str, credits: float = 100.0, **key_fields: Any) -> Account:
    admin = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base_url, headers=admin, timeout=30) as http:
        user = http.post(
            "/v1/admin/users", json={"name": f"user-{uuid.uuid4().hex[:12]}", "credits": credits}
        )
        user.raise_for_status()
        key = http.post("/v1/admin/keys", json={"user_id": user.json()["id"], **key_fields})
        key.raise_for_status()
    return Account(user.json()["id"], key.json()["id"], key.json()["key"], base_url)
