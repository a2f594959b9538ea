"""The Connect door: Atlassian Connect's descriptor, signed lifecycle, JWTs and Jira client, as `addon.doors.Door`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from flask import Blueprint, Request

from addon.connect import auth, descriptor, lifecycle
from addon.connect.install_keys import InstallKeyFetcher
from addon.connect.jira import ConnectJira, JiraClient, TenantCredentials
from addon.doors import Caller, JiraApi, Purpose, ReportAnswer
from addon.process.runtime import Runtime
from addon.storage.tenants import TenantView

REPORT_ACCOUNTS_PATH = "/rest/atlassian-connect/latest/report-accounts"


class ConnectDoor:
    name = auth.DOOR
    challenge = auth.CHALLENGE
    credentials_hint = auth.CREDENTIALS_HINT

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.install_keys = InstallKeyFetcher(runtime.settings.install_keys_url)
        self.jira = JiraClient(runtime.settings.app_key)

    def authenticate(self, request: Request, purpose: Purpose) -> Caller | None:
        return auth.authenticate(self.runtime, request, purpose)

    def jira_for(self, tenant: TenantView) -> JiraApi:
        return ConnectJira(self.jira, TenantCredentials(tenant.client_key, tenant.base_url, tenant.shared_secret))

    def blueprints(self) -> list[Blueprint]:
        return [descriptor.bp, lifecycle.bp]


    def report_accounts(self, tenant: TenantView, accounts: Sequence[Mapping[str, str]]) -> ReportAnswer:
        """Connect's personal data reporting API: on the tenant's own site, signed as the app (CONTRACT §11)."""
        credentials = TenantCredentials(tenant.client_key, tenant.base_url, tenant.shared_secret)
        return self.jira.exchange(credentials, "POST", REPORT_ACCOUNTS_PATH, json={"accounts": list(accounts)})
