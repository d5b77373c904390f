"""The operator's Kubernetes API client: a few REST calls over one pooled ``httpx`` client.

The operator works on manifests as plain dicts and makes a dozen kinds of request, so it needs no
generated client: the official one costs ~34 MiB of resident memory per process for models the
operator never builds (and kopf imports it whenever it is installed, which the operator image
avoids). Credentials come from kopf's own login helpers — the in-cluster service account, else
``KUBECONFIG``/``~/.kube/config`` — and the service-account token is re-read periodically, since
the kubelet rotates it. Calls block; the reconcile layer runs them through ``asyncio.to_thread``.
Every failure is converted to :class:`KubeError` (``NotFound``, ``Conflict``) with a one-line
message.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import Any, Final

import httpx
import kopf

from pirate_operator.api import GROUP, PLURAL, VERSION
from pirate_operator.kube.errors import Conflict, KubeError, NotFound

logger = logging.getLogger(__name__)

MERGE_PATCH: Final = "application/merge-patch+json"
#: Seconds to connect and to wait for an answer: a hung apiserver fails the step, not the operator.
CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 20.0
CONNECTION_POOL_SIZE: Final = 16
#: How often credentials are read again (the kubelet rotates projected service-account tokens).
CREDENTIALS_REFRESH_S: Final = 60.0

Login = Callable[[], kopf.ConnectionInfo]


def login() -> kopf.ConnectionInfo:
    """Credentials from the in-cluster service account, else from ``KUBECONFIG``/``~/.kube``."""
    settings = kopf.OperatorSettings()
    try:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
            settings=settings
        )
    except (kopf.LoginError, OSError, ValueError, KeyError) as exc:
        raise KubeError(f"cannot load Kubernetes credentials: {exc}") from exc
    if info is None:
        raise KubeError(
            "cannot load Kubernetes credentials: not in a cluster and no KUBECONFIG or ~/.kube/config"
        )
    return info


class _Credentials(httpx.Auth):
    """Bearer token or basic auth from the latest login, re-read every :data:`CREDENTIALS_REFRESH_S`."""

    def __init__(self, login: Login, info: kopf.ConnectionInfo) -> None:
        self._login = login
        self._info = info
        self._read_at = time.monotonic()
        self._lock = threading.Lock()

    def _current(self) -> kopf.ConnectionInfo:
        with self._lock:
            if time.monotonic() - self._read_at >= CREDENTIALS_REFRESH_S:
                try:
                    self._info = self._login()
                except KubeError as exc:
                    logger.warning("keeping the previous Kubernetes credentials: %s", exc)
                self._read_at = time.monotonic()
            return self._info

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        info = self._current()
        if info.token:
            request.headers["Authorization"] = f"Bearer {info.token}"
        elif info.username and info.password:
            basic = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
            request.headers["Authorization"] = f"Basic {basic}"
        yield request


def open_http_client(login: Login = login) -> httpx.Client:
    """One pooled client for the whole operator, TLS and credentials from ``login``."""
    info = login()
    verify: Any = False if info.insecure else info.as_ssl_context()
    return httpx.Client(
        base_url=info.server,
        verify=verify,
        auth=_Credentials(login, info),
        timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
        limits=httpx.Limits(max_connections=CONNECTION_POOL_SIZE),
        headers={"Accept": "application/json", "User-Agent": "pirate-workers-operator"},
        trust_env=bool(info.trust_env),
    )


class KubeApi:
    """The few calls the operator makes, each one request, each returning plain JSON data."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def close(self) -> None:
        self.http.close()

    def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the API serves ``plural`` in ``group/version`` (discovery: no RBAC needed)."""
        try:
            found = self._request("GET", f"/apis/{group}/{version}", f"discover {group}/{version}")
        except NotFound:
            return False
        return any(resource.get("name") == plural for resource in found.get("resources", []))

    def peering_exists(self, name: str, namespace: str | None) -> bool:
        """Whether kopf's peering object exists (KopfPeering in ``namespace``, else ClusterKopfPeering)."""
        path = (
            f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}"
            if namespace is None
            else f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/{name}"
        )
        try:
            self._request("GET", path, "read peering")
        except NotFound:
            return False
        return True

    # --- Deployments --------------------------------------------------------------------------
    def list_deployments(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found = self._request(
            "GET", _deployments(namespace), "list deployments", params={"labelSelector": selector}
        )
        return list(found.get("items", []))

    def create_deployment(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", _deployments(namespace), "create deployment", json_body=body)

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._patch(f"{_deployments(namespace)}/{name}", f"patch deployment {name}", patch)

    def delete_deployment(self, namespace: str, name: str, uid: str) -> None:
        """Delete ``name`` only if it is still the object with ``uid`` (never a successor)."""
        self._request(
            "DELETE",
            f"{_deployments(namespace)}/{name}",
            f"delete deployment {name}",
            json_body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
        )

    def patch_scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set the replicas through the scale subresource; returns the Scale object."""
        return self._patch(
            f"{_deployments(namespace)}/{name}/scale",
            f"scale deployment {name}",
            {"spec": {"replicas": replicas}},
        )

    # --- Pods, Secrets, Events ----------------------------------------------------------------
    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found = self._request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", "list pods", params={"labelSelector": selector}
        )
        return list(found.get("items", []))

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._patch(f"/api/v1/namespaces/{namespace}/pods/{name}", f"patch pod {name}", patch)

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (GET of that Secret only: the operator never lists them)."""
        secret = self._request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}", f"read secret {name}")
        encoded = (secret.get("data") or {}).get(key)
        if encoded is None:
            raise NotFound(f"secret {name} has no key {key!r}")
        try:
            return base64.b64decode(encoded).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise KubeError(f"secret {name} key {key!r} is not UTF-8 text") from exc

    def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"/api/v1/namespaces/{namespace}/events", "create event", json_body=body)

    # --- PirateWorkerPool ---------------------------------------------------------------------
    def patch_pool_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch of a pool's ``status`` subresource."""
        return self._patch(
            f"{_pool(namespace, name)}/status",
            f"patch status of {name}",
            patch,
        )

    def pool_exists(self, namespace: str, name: str) -> bool:
        try:
            self._request("GET", _pool(namespace, name), f"read pool {name}")
        except NotFound:
            return False
        return True

    def delete_pool(self, namespace: str, name: str) -> bool:
        """Delete a pool; False when there was none."""
        try:
            self._request("DELETE", _pool(namespace, name), f"delete pool {name}")
        except NotFound:
            return False
        return True

    # --- transport ----------------------------------------------------------------------------
    def _patch(self, path: str, what: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self._request("PATCH", path, what, json_body=patch, content_type=MERGE_PATCH)

    def _request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        content = None if json_body is None else json.dumps(json_body).encode()
        headers = {} if content is None else {"Content-Type": content_type}
        try:
            response = self.http.request(method, path, params=params, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise KubeError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if response.is_error:
            raise _api_error(what, response)
        if not response.content:
            return {}
        try:
            parsed = response.json()
        except ValueError as exc:
            raise KubeError(f"{what}: the API answered with something that is not JSON") from exc
        return parsed if isinstance(parsed, dict) else {}


def _deployments(namespace: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments"


def _pool(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"


def _api_error(what: str, response: httpx.Response) -> KubeError:
    message = response.reason_phrase or "error"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    text = f"{what}: {message} (HTTP {response.status_code} {response.reason_phrase})"
    if response.status_code == 404:
        return NotFound(text, response.status_code)
    if response.status_code == 409:
        return Conflict(text, response.status_code)
    return KubeError(text, response.status_code)
