"""kopf glue, and nothing else: the one composition root registering every handler.

* a startup handler applies kopf's settings (finalizer name, annotation storage, watch timeouts,
  event posting, peering lifetime) and builds the long-lived clients into ``memo``;
* an index keeps the Deployments the operator manages, fed by a watch, so a polling cycle reads
  them without an API call;
* one daemon per pool runs its level-based polling loop every ``pollingIntervalSeconds``. kopf
  stops it when the pool is deleted, when this replica is paused by peering, or at exit.

A daemon needs a finalizer (kopf stops it before letting the pool go); the operator's own name
is used. The Deployments are removed by Kubernetes' garbage collector through their
ownerReferences, so the finalizer guards nothing but the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

import kopf

from pirate_operator.api import GROUP, PLURAL, VERSION
from pirate_operator.http_server import HttpServer
from pirate_operator.kube import DeploymentView, KubeApi, KubeError, deployment_view, open_http_client
from pirate_operator.kube.client import login as kube_login
from pirate_operator.kube.names import MANAGED_BY_LABEL, MANAGER
from pirate_operator.metrics import OperatorMetrics
from pirate_operator.reconcile import OperatorContext, PoolLoop
from pirate_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

FINALIZER: Final = "pirateradio.dev/finalizer"
ANNOTATION_PREFIX: Final = "pirateradio.dev"
#: Blocking calls (Kubernetes, Redis) run in these threads; enough for ~100 pools per cycle.
IO_THREADS: Final = 32
#: Seconds a stopping daemon may take to finish its cycle before kopf cancels it.
CANCELLATION_TIMEOUT: Final = 15.0
#: Shortest pause between two cycles of one pool, even when a cycle overran its interval.
MIN_PAUSE: Final = 0.2


def configure_kopf(settings: kopf.OperatorSettings, config: OperatorSettings) -> None:
    """kopf tuned explicitly: silent watch stalls and shared annotation names are its usual traps."""
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.watching.server_timeout = config.OPERATOR_WATCH_TIMEOUT
    settings.watching.client_timeout = config.OPERATOR_WATCH_TIMEOUT + 30
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # No watching of CRDs and namespaces: that needs cluster-scoped RBAC (customresourcedefinitions,
    # namespaces) the operator is not granted, and kopf retries a refused request for ~40 s before
    # falling back. The resources are discovered once at start (the CRD must exist by then, which
    # the startup handler checks), and the namespaces are the ones given.
    settings.scanning.disabled = True
    # The operator posts its own Events; kopf turns only its warnings and errors into more.
    settings.posting.level = logging.WARNING
    settings.peering.lifetime = config.OPERATOR_PEERING_LIFETIME
    settings.peering.stealth = True


@dataclass(frozen=True)
class PeeringCheck:
    """The peering object kopf will use; ``namespaces`` None means cluster-wide."""

    name: str
    namespaces: tuple[str, ...] | None


async def check_peering(kube: KubeApi, peering: PeeringCheck) -> None:
    """Stop with one line if the peering object is missing: kopf would wait for it silently."""
    places: tuple[str | None, ...] = peering.namespaces if peering.namespaces is not None else (None,)
    for namespace in places:
        if not await asyncio.to_thread(kube.peering_exists, peering.name, namespace):
            where = (
                f"KopfPeering {peering.name!r} in namespace {namespace}"
                if namespace
                else (f"ClusterKopfPeering {peering.name!r}")
            )
            raise kopf.PermanentError(
                f"{where} not found (kopf.dev/v1): create it, or unset OPERATOR_PEERING to run standalone"
            )


def build_registry(config: OperatorSettings, peering: PeeringCheck | None = None) -> kopf.OperatorRegistry:
    """Every handler of the operator, bound to ``config``, in a registry of its own.

    ``peering`` names the peering object the operator was told to use, checked at start.
    """
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(id="configure", registry=registry)
    async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure_kopf(settings, config)
        if config.LOG_LEVEL == "ERROR":
            logging.getLogger().setLevel(logging.ERROR)
        # httpx logs every request at INFO: a line per pool per cycle.
        logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="pirate-io")
        )
        try:
            kube = KubeApi(open_http_client())
            served = await asyncio.to_thread(kube.serves, GROUP, VERSION, PLURAL)
        except KubeError as exc:
            raise kopf.TemporaryError(f"cannot reach the Kubernetes API: {exc}", delay=5) from exc
        if not served:
            raise kopf.PermanentError(
                f"the CRD {PLURAL}.{GROUP} ({VERSION}) is not installed: "
                "apply it first (pirate-workers crd | kubectl apply -f -)"
            )
        if peering is not None:
            try:
                await check_peering(kube, peering)
            except KubeError as exc:
                raise kopf.TemporaryError(f"cannot read the peering object: {exc}", delay=5) from exc
        metrics = OperatorMetrics()
        server = None
        if config.OPERATOR_HTTP_PORT:
            server = HttpServer(metrics, config.OPERATOR_HTTP_PORT)
            try:
                await server.start()
            except OSError as exc:
                raise kopf.PermanentError(f"cannot serve on port {config.OPERATOR_HTTP_PORT}: {exc}") from exc
        memo.operator = OperatorContext(kube=kube, metrics=metrics)
        memo.http_server = server

    @kopf.on.login(id="login", registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo | None:
        # A registry of its own has none of kopf's default login handlers: the same credentials
        # as the operator's API client (in-cluster service account, else kubeconfig).
        try:
            return kube_login()
        except KubeError as exc:
            logger.error("%s", exc)
            return None

    @kopf.on.cleanup(id="close", registry=registry)
    async def stop(memo: kopf.Memo, **_: Any) -> None:
        server: HttpServer | None = memo.get("http_server")
        if server is not None:
            await server.stop()
        context: OperatorContext | None = memo.get("operator")
        if context is not None:
            context.close()

    @kopf.index(
        "apps",
        "v1",
        "deployments",
        id="pool_deployments",
        labels={MANAGED_BY_LABEL: MANAGER},
        registry=registry,
    )
    def pool_deployments(body: kopf.Body, **_: Any) -> dict[tuple[str, str], DeploymentView]:
        view = deployment_view(body)
        return {(view.namespace, view.pool): view}

    @kopf.daemon(
        GROUP, VERSION, PLURAL, id="scale", registry=registry, cancellation_timeout=CANCELLATION_TIMEOUT
    )
    async def scale_pool(
        body: kopf.Body,
        name: str,
        namespace: str | None,
        stopped: kopf.DaemonStopped,
        memo: kopf.Memo,
        **kwargs: Any,
    ) -> None:
        # kopf passes every index as a keyword named after the index handler's id.
        deployments: kopf.Index[tuple[str, str], DeploymentView] = kwargs["pool_deployments"]
        namespace = namespace or ""
        loop = PoolLoop(memo.operator, namespace, name)
        logger.info("scaling %s/%s", namespace, name)
        try:
            while not stopped:
                started = time.monotonic()
                live = {view.role: view for view in deployments.get((namespace, name), [])}
                interval = await loop.cycle(body, live)
                await stopped.wait(max(MIN_PAUSE, interval - (time.monotonic() - started)))
        finally:
            loop.close()
            logger.info("stopped scaling %s/%s (%s)", namespace, name, stopped.reason)

    return registry
