"""Calling the admin API as the admin page does: a context token from the tenant's Jira."""

from __future__ import annotations

from typing import Any

import requests

from tests.support.atlassian import FakeSite


class AdminClient:
    def __init__(self, addon_url: str, site: FakeSite, account_id: str = "admin-account") -> None:
        self.addon_url = addon_url
        self.site = site
        self.account_id = account_id

    def request(self, method: str, path: str, json_body: Any = None, **kwargs: Any) -> requests.Response:
        token = self.site.context_token(sub=self.account_id)
        headers = {"Authorization": f"JWT {token}"}
        return requests.request(method, self.addon_url + path, json=json_body, headers=headers, timeout=30, **kwargs)

    def create(self, name: str = "Receiver", url: str = "https://hooks.example.com/in", **extra: Any) -> dict:
        response = self.request("POST", "/api/webhooks", {"name": name, "url": url, **extra})
        assert response.status_code == 201, response.text
        return response.json()
