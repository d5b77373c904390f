"""The operator's Kubernetes API client: the official sync client, plain dicts in and out.

Responses are read raw (``_preload_content=False``) and parsed with ``json``: the operator works
on manifests as dicts, and skipping the generated models keeps a polling cycle cheap. Calls
block; the reconcile layer runs them through ``asyncio.to_thread``. Every failure is converted to
:class:`KubeError` (``NotFound``, ``Conflict``) with a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any, Final

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from pirate_operator.api import GROUP, PLURAL, VERSION
from pirate_operator.kube.errors import Conflict, KubeError, NotFound

logger = logging.getLogger(__name__)

MERGE_PATCH: Final = "application/merge-patch+json"
#: (connect, read) seconds of every request: a hung apiserver fails the step, not the operator.
REQUEST_TIMEOUT: Final = (5.0, 20.0)
CONNECTION_POOL_SIZE: Final = 16


def load_api_client() -> k8s.ApiClient:
    """An API client from the in-cluster service account, else from ``KUBECONFIG``/``~/.kube``."""
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = CONNECTION_POOL_SIZE
    return k8s.ApiClient(configuration)


class KubeApi:
    """The few calls the operator makes, each one request, each returning plain JSON data."""

    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.api_client = api_client
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)

    def close(self) -> None:
        self.api_client.close()  # type: ignore[no-untyped-call]

    def serves(self, group: str, version: str, plural: str) -> bool:
        """Whether the API serves ``plural`` in ``group/version`` (discovery: no RBAC needed)."""
        try:
            found = _call(f"discover {group}/{version}", self._custom.get_api_resources, group, version)
        except NotFound:
            return False
        return any(resource.get("name") == plural for resource in found.get("resources", []))

    def peering_exists(self, name: str, namespace: str | None) -> bool:
        """Whether kopf's peering object exists (KopfPeering in ``namespace``, else ClusterKopfPeering)."""
        try:
            if namespace is None:
                _call(
                    "read peering",
                    self._custom.get_cluster_custom_object,
                    "kopf.dev",
                    "v1",
                    "clusterkopfpeerings",
                    name,
                )
            else:
                _call(
                    "read peering",
                    self._custom.get_namespaced_custom_object,
                    "kopf.dev",
                    "v1",
                    namespace,
                    "kopfpeerings",
                    name,
                )
        except NotFound:
            return False
        return True

    # --- Deployments --------------------------------------------------------------------------
    def list_deployments(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found = _call(
            "list deployments",
            self._apps.list_namespaced_deployment,
            namespace,
            label_selector=selector,
        )
        return list(found.get("items", []))

    def create_deployment(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return _call("create deployment", self._apps.create_namespaced_deployment, namespace, body)

    def patch_deployment(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return _call(
            f"patch deployment {name}",
            self._apps.patch_namespaced_deployment,
            name,
            namespace,
            patch,
            _content_type=MERGE_PATCH,
        )

    def delete_deployment(self, namespace: str, name: str, uid: str) -> None:
        """Delete ``name`` only if it is still the object with ``uid`` (never a successor)."""
        _call(
            f"delete deployment {name}",
            self._apps.delete_namespaced_deployment,
            name,
            namespace,
            body={"preconditions": {"uid": uid}, "propagationPolicy": "Background"},
        )

    def patch_scale(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        """Set the replicas through the scale subresource; returns the Scale object."""
        return _call(
            f"scale deployment {name}",
            self._apps.patch_namespaced_deployment_scale,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
            _content_type=MERGE_PATCH,
        )

    # --- Pods, Secrets, Events ----------------------------------------------------------------
    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        found = _call("list pods", self._core.list_namespaced_pod, namespace, label_selector=selector)
        return list(found.get("items", []))

    def patch_pod(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return _call(
            f"patch pod {name}",
            self._core.patch_namespaced_pod,
            name,
            namespace,
            patch,
            _content_type=MERGE_PATCH,
        )

    def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (GET of that Secret only: the operator never lists them)."""
        secret = _call(f"read secret {name}", self._core.read_namespaced_secret, name, namespace)
        encoded = (secret.get("data") or {}).get(key)
        if encoded is None:
            raise NotFound(f"secret {name} has no key {key!r}")
        try:
            return base64.b64decode(encoded).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise KubeError(f"secret {name} key {key!r} is not UTF-8 text") from exc

    def create_event(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return _call("create event", self._core.create_namespaced_event, namespace, body)

    # --- PirateWorkerPool ---------------------------------------------------------------------
    def patch_pool_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """JSON merge patch of a pool's ``status`` subresource."""
        return _call(
            f"patch status of {name}",
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            patch,
            _content_type=MERGE_PATCH,
        )


def _call(what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    try:
        response = method(*args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        data = response.data
    except ApiException as exc:
        raise _api_error(what, exc) from exc
    except HTTPError as exc:
        raise KubeError(f"{what}: {exc}") from exc
    if not data:
        return {}
    parsed = json.loads(data)
    return parsed if isinstance(parsed, dict) else {}


def _api_error(what: str, exc: ApiException) -> KubeError:
    message = exc.reason or "error"
    if exc.body:
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(exc.body).get("message", message)
    text = f"{what}: {message} (HTTP {exc.status})"
    if exc.status == 404:
        return NotFound(text, exc.status)
    if exc.status == 409:
        return Conflict(text, exc.status)
    return KubeError(text, exc.status)
