"""The Connect door: Atlassian Connect's descriptor, signed lifecycle, JWTs and Jira client, as `addon.doors.Door`."""

from __future__ import annotations

from flask import Blueprint, Request

from addon.connect import auth, descriptor, lifecycle
from addon.connect.install_keys import InstallKeyFetcher
from addon.connect.jira import ConnectJira, JiraClient, TenantCredentials
from addon.doors import Caller, JiraApi, Purpose
from addon.process.runtime import Runtime
from addon.storage.tenants import TenantView


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

