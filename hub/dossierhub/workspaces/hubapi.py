"""A small client for the JupyterHub REST API, as the dossierhub service."""

from __future__ import annotations

import time
from typing import Any

import httpx

from dossierhub.state.home import Home
from dossierhub.workspaces.servestate import read_serve_state
from dossierhub.workspaces.tokens import read_token


class HubUnavailable(Exception):
    """The hub is not running for this HOME, or does not answer."""


class HubAPI:
    def __init__(self, api_url: str, token: str, timeout: float = 30):
        self.client = httpx.Client(
            base_url=api_url.rstrip("/") + "/",
            headers={"Authorization": f"token {token}"},
            timeout=timeout,
        )

    @classmethod
    def for_home(cls, home: Home) -> HubAPI:
        state = read_serve_state(home)
        if state is None:
            raise HubUnavailable(
                f"the hub for {home.root} is not running: start it with `dossierhub serve`"
            )
        return cls(state.hub_api, read_token(home, "service"))

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path.lstrip("/"), **kwargs)
        except httpx.HTTPError as exc:
            raise HubUnavailable(f"the hub does not answer ({exc.__class__.__name__})") from None
        if response.status_code >= 400:
            raise HubUnavailable(
                f"hub API {method} {path}: {response.status_code} {response.text[:200]}"
            )
        return response.json() if response.content else None

    def ready(self) -> bool:
        try:
            return self.client.get("").status_code == 200
        except httpx.HTTPError:
            return False

    def users(self) -> dict[str, dict]:
        return {u["name"]: u for u in self._call("GET", "users", params={"limit": 10000})}

    def user(self, name: str) -> dict | None:
        response = self.client.get(f"users/{name}")
        return response.json() if response.status_code == 200 else None

    def create_users(self, names: list[str]) -> None:
        if names:
            self._call("POST", "users", json={"usernames": names})

    def delete_user(self, name: str) -> None:
        self._call("DELETE", f"users/{name}")

    def groups(self) -> dict[str, list[str]]:
        return {g["name"]: g["users"] for g in self._call("GET", "groups", params={"limit": 10000})}

    def create_group(self, name: str) -> None:
        self._call("POST", f"groups/{name}", json={})

    def delete_group(self, name: str) -> None:
        self._call("DELETE", f"groups/{name}")

    def add_to_group(self, name: str, users: list[str]) -> None:
        if users:
            self._call("POST", f"groups/{name}/users", json={"users": users})

    def remove_from_group(self, name: str, users: list[str]) -> None:
        if users:
            self._call("DELETE", f"groups/{name}/users", json={"users": users})

    def server_running(self, name: str) -> bool:
        model = self.user(name)
        return bool(model and model.get("servers", {}).get("", {}).get("ready"))

    def stop_server(self, name: str, wait: float = 60) -> None:
        response = self.client.delete(f"users/{name}/server")
        if response.status_code not in (202, 204, 400, 404):
            raise HubUnavailable(f"stopping {name}: {response.status_code} {response.text}")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            model = self.user(name)
            if not model or not model.get("servers"):
                return
            time.sleep(0.2)

    def start_server(self, name: str) -> None:
        response = self.client.post(f"users/{name}/server")
        if response.status_code not in (201, 202, 400):
            raise HubUnavailable(f"starting {name}: {response.status_code} {response.text}")

    def new_token(self, name: str, note: str) -> str:
        return self._call("POST", f"users/{name}/tokens", json={"note": note})["token"]
