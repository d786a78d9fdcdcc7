"""The scale-out profiles for real: PostgreSQL instance storage and Celery workers (deploy/).

The slow tests start what a deployment runs, on this machine and bound to
127.0.0.1: a PostgreSQL server (deploy/postgres/dagster.yaml as the instance),
a Redis broker, and two Celery workers started with the documented command
(`dagster-celery worker start -A dagster_celery.app -y deploy/celery/celery-worker.yaml
-i assets.lake_check`), each one process wide. `voxlake run` then carries the
bundled corpora through the whole pipeline with `execution.executor: celery`,
starting its own daemon.

The kill test runs the same project again from nothing and SIGKILLs the process
of a worker while it executes a unit step: Celery hands the step back to the
queue (`task_reject_on_worker_lost`), a worker runs it again, the run succeeds,
and the lake ends byte for byte as the clean run left it.

They skip, saying why, only where the PostgreSQL binaries or redis-server are
absent (`python3 dev.py test` installs both).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.events import DagsterEventType

from assets.instance import open_instance
from assets.lake_check import LakeNotVisibleError, check_lake_visible, load_visible_project
from assets.launch import free_port
from assets.resources import VoxlakeProject
from assets.runner import RunReport, run_assets
from pipelines.catalogue.build import rebuild_catalogue
from pipelines.catalogue.read import open_catalogue_readonly
from pipelines.demo.project import DEMO_SOURCES, demo_config
from pipelines.project import DAGSTER_HOME_DIR, Project, init_project
from schemas import ProjectConfig

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
SOURCES = {name for name, *_ in DEMO_SOURCES}  # every bundled corpus
START_TIMEOUT_S = 60.0
UNIT_STEPS = ("quality", "tokens")
"""Steps the kill test may kill a worker in: per-unit steps with real work."""

PG_USER = "voxlake"
UNPRIVILEGED = "nobody"
"""PostgreSQL refuses to run as root; as root the test runs it as this user."""


# --- the services -------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_unprivileged() -> list[str]:
    """The command prefix that runs PostgreSQL as a user it accepts (empty unless root)."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam(UNPRIVILEGED)
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", UNPRIVILEGED, "--"]
    pytest.skip("running as root without setpriv or runuser: cannot start PostgreSQL unprivileged")


def _start(
    command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """A process in a session of its own, so that `_stop` reaches all its children."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )


def _stop(
    process: subprocess.Popen, timeout_s: float = 20.0, first: signal.Signals = signal.SIGTERM
) -> None:
    """Signal the process group (`first`), then SIGKILL what is left of it."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, first)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    # Children (a Celery pool, PostgreSQL's backends) may outlive their leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)


def _tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _wait_for(what: str, ready, process: subprocess.Popen, log: Path) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}; its log ends:\n{_tail(log)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.2)
    pytest.fail(f"{what} not ready within {START_TIMEOUT_S:.0f} s; its log ends:\n{_tail(log)}")


@dataclass
class Postgres:
    port: int

    def url(self, database: str) -> str:
        # `+psycopg2`: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3.
        return f"postgresql+psycopg2://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=PG_USER, dbname="postgres"
        )
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return self.url(name)


@dataclass
class Redis:
    port: int
    databases: list[int] = field(default_factory=lambda: list(range(16)))

    def take(self) -> tuple[str, str]:
        """A broker URL and a backend URL on databases no other test uses."""
        broker, backend = self.databases.pop(0), self.databases.pop(0)
        return f"{self.url}/{broker}", f"{self.url}/{backend}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A PostgreSQL server on a free loopback port, data in a throw-away folder."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL (initdb, postgres) not found; `python3 dev.py test` installs it")
    prefix = _as_unprivileged()
    # Directly under /tmp when PostgreSQL runs as another user: pytest's own temporary
    # folders (and maybe $TMPDIR) are private to ours.
    root = Path(tempfile.mkdtemp(prefix="voxlake-pg-", dir="/tmp" if prefix else None))
    log = tmp_path_factory.mktemp("postgres") / "postgres.log"
    process = None
    try:
        if prefix:
            user = pwd.getpwnam(UNPRIVILEGED)
            os.chown(root, user.pw_uid, user.pw_gid)
        data = root / "data"
        done = subprocess.run(
            [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER,
             "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync"],
            capture_output=True, text=True, cwd=root,
        )  # fmt: skip
        assert done.returncode == 0, f"initdb failed:\n{done.stdout}\n{done.stderr}"
        port = free_port()
        process = _start(
            [*prefix, str(bin_dir / "postgres"), "-D", str(data),
             "-h", "127.0.0.1", "-p", str(port), "-k", "",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=300"],
            log,
            cwd=root,
        )  # fmt: skip
        server = Postgres(port)

        def ready() -> bool:
            import psycopg2

            psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres").close()
            return True

        _wait_for("postgres", ready, process, log)
        yield server
    finally:
        if process is not None:
            _stop(process, first=signal.SIGINT)  # "fast" shutdown: not waiting for clients
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """A Redis server on a free loopback port that keeps nothing on disk."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server not found; `python3 dev.py test` installs it")
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    log = folder / "redis.log"
    process = _start(
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(folder), "--daemonize", "no"],
        log,
    )  # fmt: skip

    def ready() -> bool:
        import redis

        return bool(redis.Redis(host="127.0.0.1", port=port).ping())

    try:
        _wait_for("redis-server", ready, process, log)
        yield Redis(port)
    finally:
        _stop(process)


# --- a cluster-profile project and its workers ----------------------------------------


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path

    def pool_children(self) -> list[int]:
        """Processes of the worker's pool: children of the `celery worker` main process.

        `dagster-celery worker start` runs `celery ... worker` as its child; that one
        forks the pool's processes, which execute the steps.
        """
        mains = _children(self.process.pid)
        return [pid for main in mains for pid in _children(main)]


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _worker_command(name: str) -> list[str]:
    """The documented worker command (deploy/celery), one pool process."""
    return [
        str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
        "-y", str(DEPLOY / "celery" / "celery-worker.yaml"),
        "-i", "assets.lake_check", "-n", name, "--loglevel", "INFO",
        "--", "--concurrency=1",
    ]  # fmt: skip


@dataclass
class Cluster:
    project: Project
    workers: list[Worker]
    database_url: str


def _instance(project: Project, database_url: str) -> dg.DagsterInstance:
    """The project's instance; its dagster.yaml reads the URL from the environment."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOXLAKE_POSTGRES_URL", database_url)
        return dg.DagsterInstance.from_config(str(project.dagster_home))


def _cluster_project(folder: Path, corpora: Path, broker: str, backend: str) -> Project:
    """A project of the bundled corpora, executor `celery`, its instance the postgres profile."""
    config = demo_config(folder, corpora).model_dump(mode="json")
    config["sources"] = [s for s in config["sources"] if s["name"] in SOURCES]
    config["quality"]["sources"] = {
        k: v for k, v in config["quality"]["sources"].items() if k in SOURCES
    }
    config["releases"] = []
    config["training"]["release"] = None
    config["execution"] = {
        "executor": "celery",
        "celery_broker": broker,
        "celery_backend": backend,
        "units_per_run": 4,
    }
    # The profile goes in first: the project's Dagster home takes the template only
    # when it has no dagster.yaml of its own.
    home = folder / DAGSTER_HOME_DIR
    home.mkdir(parents=True)
    shutil.copyfile(DEPLOY / "celery" / "dagster.yaml", home / "dagster.yaml")
    return init_project(folder, ProjectConfig.model_validate(config))


@contextlib.contextmanager
def _cluster(
    folder: Path, corpora: Path, postgres: Postgres, redis_server: Redis
) -> Iterator[Cluster]:
    """A project on the cluster profiles with two one-process Celery workers running."""
    database_url = postgres.create_database(folder.name)
    broker, backend = redis_server.take()
    project = _cluster_project(folder / "proj", corpora, broker, backend)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(project.dagster_home),
        "VOXLAKE_PROJECT": str(project.directory),
        "VOXLAKE_POSTGRES_URL": database_url,
        "VOXLAKE_CELERY_BROKER": broker,
        "VOXLAKE_CELERY_BACKEND": backend,
        "PYTHONUNBUFFERED": "1",
    }
    workers: list[Worker] = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            # voxlake itself (and the daemon and code server it starts) opens the
            # instance too.
            patch.setenv("VOXLAKE_POSTGRES_URL", database_url)
            # Creates the instance's tables (and sets the pools) once, before the
            # workers open it: as `dagster instance migrate` does in a deployment.
            open_instance(project)
            for name in ("w1", "w2"):
                log = folder / f"worker-{name}.log"
                process = _start(
                    _worker_command(name),
                    log,
                    env=env,
                    cwd=project.directory,
                )  # fmt: skip
                workers.append(Worker(name, process, log))
            for worker in workers:
                _wait_for(
                    f"celery worker {worker.name}",
                    lambda w=worker: " ready." in w.log.read_text(errors="replace"),
                    worker.process,
                    worker.log,
                )
            yield Cluster(project, workers, database_url)
    finally:
        for worker in workers:
            _stop(worker.process)


def _logs(cluster: Cluster) -> str:
    return "\n".join(f"--- {w.name} ---\n{_tail(w.log)}" for w in cluster.workers)


def _table(con, name: str) -> pl.DataFrame:  # type: ignore[no-untyped-def]
    frame = pl.from_arrow(con.sql(f"SELECT * FROM {name}").to_arrow_table())
    return frame.sort(frame.columns)


def _assert_catalogue_equals_rebuild(project: Project, folder: Path) -> None:
    rebuilt = folder / "rebuilt.duckdb"
    rebuild_catalogue(project, path=rebuilt)
    with (
        open_catalogue_readonly(project.catalogue_path) as a,
        open_catalogue_readonly(rebuilt) as b,
    ):
        for table in ("utterances", "shards", "code_shards", "units", "sources"):
            assert _table(a, table).equals(_table(b, table)), table


KNOWN_TO_DIFFER = {
    # The one file of the lake that is not a function of its inputs: the quality report
    # says when it was rendered (quality/report/sections.py, "generated").
    "reports/quality.html": (
        re.compile(rb"<dt>generated</dt><dd>[^<]*</dd>"),
        b"<dt>generated</dt><dd>-</dd>",
    ),
}


def _lake_digest(project: Project) -> dict[str, str]:
    """sha256 of every file under the lake, by its path relative to the lake root.

    The files of KNOWN_TO_DIFFER are hashed with their run-dependent part blanked.
    """
    root = project.lake.root
    digest = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        name = path.relative_to(root).as_posix()
        data = path.read_bytes()
        if name in KNOWN_TO_DIFFER:
            pattern, blank = KNOWN_TO_DIFFER[name]
            data, found = pattern.subn(blank, data)
            assert found == 1, f"{name}: the run-dependent part changed form"
        digest[name] = hashlib.sha256(data).hexdigest()
    return digest


def _steps_by_worker(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str]]:
    """(step, Celery worker) of every task the run's steps were executed in, in order."""
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ENGINE_EVENT).records
    found = []
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = event.engine_event_data.metadata if event else {}
        if "Celery worker" in metadata:
            found.append((event.step_key, metadata["Celery worker"].value))
    return found


@dataclass
class CleanRun:
    project: Project
    database_url: str
    report: RunReport
    lake: dict[str, str]
    wall_s: float


@pytest.fixture(scope="module")
def clean_run(
    tmp_path_factory: pytest.TempPathFactory, corpora: Path, postgres: Postgres, redis_server: Redis
) -> CleanRun:
    """Every bundled corpus through the whole pipeline on the cluster profiles, once."""
    folder = tmp_path_factory.mktemp("clean")
    with _cluster(folder, corpora, postgres, redis_server) as cluster:
        started = time.monotonic()
        report = run_assets(cluster.project)
        wall_s = time.monotonic() - started
        assert report.success, f"{report.failures}\n{_logs(cluster)}"
        lake = _lake_digest(cluster.project)
        return CleanRun(cluster.project, cluster.database_url, report, lake, wall_s)


@pytest.mark.slow
def test_the_whole_pipeline_runs_on_celery_workers_with_postgres_storage(
    clean_run: CleanRun,
) -> None:
    project = clean_run.project
    print(f"clean run: {len(clean_run.report.units)} units in {clean_run.wall_s:.0f} s")
    instance = _instance(project, clean_run.database_url)
    # The instance is the postgres profile's ...
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    # ... every source got to shards ...
    units = set(clean_run.report.units)
    assert {u.split(".")[0] for u in units} == SOURCES
    for key in ("manifest", "quality", "tokens"):
        assert instance.get_materialized_partitions(dg.AssetKey(key)) == units, key
    # ... and both workers executed the steps.
    workers = {
        worker.split("@")[0]
        for run_id in clean_run.report.run_ids
        for _, worker in _steps_by_worker(instance, run_id)
    }
    assert workers == {"w1", "w2"}
    assert not [p for p in clean_run.lake if p.endswith((".tmp", ".partial"))]
    _assert_catalogue_equals_rebuild(project, project.directory.parent)


class _Killer(threading.Thread):
    """Watches the instance; SIGKILLs the pool process of the worker executing a unit step."""

    def __init__(self, cluster: Cluster) -> None:
        super().__init__(daemon=True)
        self.cluster = cluster
        self.stop = threading.Event()
        self.killed: tuple[str, str, str, int] | None = None  # run, step, worker, pid
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._watch()
        except BaseException as error:  # reported by the test, not lost in the thread
            self.error = error

    def _watch(self) -> None:
        instance = _instance(self.cluster.project, self.cluster.database_url)
        workers = {w.name: w for w in self.cluster.workers}
        while not self.stop.is_set() and self.killed is None:
            for run in instance.get_runs(
                filters=dg.RunsFilter(job_name="unit_job", statuses=[dg.DagsterRunStatus.STARTED])
            ):
                target = self._running_step(instance, run.run_id)
                if target is None:
                    continue
                step, worker = target
                if self._running_step(instance, run.run_id) != target:
                    continue  # finished meanwhile: its worker may be on another step now
                pids = workers[worker.split("@")[0]].pool_children()
                if len(pids) != 1:
                    continue
                os.kill(pids[0], signal.SIGKILL)
                self.killed = (run.run_id, step, worker, pids[0])
                return
            time.sleep(0.1)

    @staticmethod
    def _running_step(instance: dg.DagsterInstance, run_id: str) -> tuple[str, str] | None:
        """A unit step of the run that a worker has started and not yet finished."""
        kinds = {
            DagsterEventType.ENGINE_EVENT,
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
            DagsterEventType.STEP_FAILURE,
        }
        state: dict[str, tuple[str, bool]] = {}  # step -> (worker, started)
        for record in instance.get_records_for_run(run_id, of_type=kinds).records:
            event = record.event_log_entry.dagster_event
            if event is None or event.step_key not in UNIT_STEPS:
                continue
            if event.event_type == DagsterEventType.ENGINE_EVENT:
                worker = event.engine_event_data.metadata.get("Celery worker")
                if worker is not None:
                    state[event.step_key] = (worker.value, False)
            elif event.event_type == DagsterEventType.STEP_START:
                if event.step_key in state:
                    state[event.step_key] = (state[event.step_key][0], True)
            else:
                state.pop(event.step_key, None)
        for step, (worker, started) in state.items():
            if started:
                return step, worker
        return None


@pytest.mark.slow
def test_a_worker_killed_in_a_unit_step_loses_nothing(
    tmp_path: Path, corpora: Path, postgres: Postgres, redis_server: Redis, clean_run: CleanRun
) -> None:
    with _cluster(tmp_path, corpora, postgres, redis_server) as cluster:
        killer = _Killer(cluster)
        killer.start()
        try:
            report = run_assets(cluster.project)
        finally:
            killer.stop.set()
            killer.join(timeout=10)
        assert killer.error is None, killer.error
        assert killer.killed is not None, "no unit step was seen running; nothing was killed"
        run_id, step, worker, pid = killer.killed
        assert report.success, f"{report.failures}\n{_logs(cluster)}"

        instance = _instance(cluster.project, cluster.database_url)
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        # Celery handed the killed step back to the queue and a worker ran it again
        # (the same Celery task, redelivered): the step never failed, so Dagster had
        # nothing to retry.
        attempts = [w for s, w in _steps_by_worker(instance, run_id) if s == step]
        assert len(attempts) >= 2 and attempts[0] == worker, attempts
        steps_ended = instance.get_records_for_run(
            run_id, of_type={DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE}
        ).records
        ended = [r.event_log_entry.dagster_event for r in steps_ended]
        assert [e.event_type for e in ended if e.step_key == step] == [
            DagsterEventType.STEP_SUCCESS
        ]
        print(f"killed {worker} (pid {pid}) in step {step} of run {run_id}; attempts: {attempts}")
        logs = "\n".join(w.log.read_text(errors="replace") for w in cluster.workers)
        assert f"pid:{pid} exited with 'signal 9 (SIGKILL)'" in logs, _logs(cluster)

        # Nothing of the killed attempt is left: the lake is the clean run's, byte for byte.
        lake = _lake_digest(cluster.project)
        assert lake.keys() == clean_run.lake.keys()
        differ = sorted(p for p in lake if lake[p] != clean_run.lake[p])
        assert not differ, differ
        _assert_catalogue_equals_rebuild(cluster.project, tmp_path)


# --- the profiles themselves ------------------------------------------------------------


def test_the_local_profile_is_the_embedded_instance_template() -> None:
    assert (DEPLOY / "local" / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()


@pytest.mark.parametrize("profile", ["postgres", "celery"])
def test_the_postgres_profiles_store_the_instance_in_postgres(profile: str) -> None:
    instance = yaml.safe_load((DEPLOY / profile / "dagster.yaml").read_text())
    local = yaml.safe_load((DEPLOY / "local" / "dagster.yaml").read_text())
    assert instance["storage"] == {"postgres": {"postgres_url": {"env": "VOXLAKE_POSTGRES_URL"}}}
    # Everything but the storage is the local profile's.
    assert {k: v for k, v in instance.items() if k != "storage"} == local


def test_the_celery_profile_matches_the_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster_celery.cli import get_validated_config

    from assets.executors import celery_config
    from schemas.project import ExecutionSettings

    snippet = yaml.safe_load((DEPLOY / "celery" / "voxlake.yaml").read_text())
    settings = ExecutionSettings.model_validate(snippet["execution"])
    assert settings.executor == "celery"
    monkeypatch.setenv("VOXLAKE_CELERY_BROKER", settings.celery_broker)
    monkeypatch.setenv("VOXLAKE_CELERY_BACKEND", settings.celery_backend)
    # What `dagster-celery worker start -y` reads, validated as it validates it.
    worker = get_validated_config(str(DEPLOY / "celery" / "celery-worker.yaml"))
    executor = celery_config(settings)
    assert (worker["broker"], worker["backend"]) == (executor["broker"], executor["backend"])
    # The worker acts on the acknowledgement settings: they must be the executor's.
    assert worker["config_source"] == executor["config_source"]


def test_check_lake_visible_names_the_host_and_the_path(tmp_path: Path) -> None:
    project = init_project(tmp_path / "proj")
    check_lake_visible(project)  # there, and writable

    shutil.rmtree(project.lake.root)
    with pytest.raises(LakeNotVisibleError) as raised:
        check_lake_visible(project, host="worker-7")
    message = str(raised.value)
    assert "worker-7" in message and str(project.lake.root) in message
    assert "does not exist" in message and "deploy/README.md" in message

    project.lake.root.write_text("not a folder")
    with pytest.raises(LakeNotVisibleError, match="is not a folder"):
        check_lake_visible(project)

    elsewhere = Project(tmp_path / "not-mounted", project.config)
    with pytest.raises(LakeNotVisibleError, match="project folder") as raised:
        check_lake_visible(elsewhere)
    assert raised.value.host == socket.gethostname()


def _executor_config_errors(executor: dg.ExecutorDefinition, config: dict) -> list[str]:
    from dagster._config import process_config, resolve_to_config_type

    assert executor.config_schema is not None
    result = process_config(resolve_to_config_type(executor.config_schema.config_type), config)
    return [e.message for e in result.errors or []]


def test_the_profiles_executor_blocks_are_valid_executor_configuration() -> None:
    from dagster_celery import celery_executor
    from dagster_k8s import k8s_job_executor

    from assets.executors import celery_config, k8s_config
    from schemas.project import ExecutionSettings

    for profile, executor, config in (
        ("celery", celery_executor, celery_config),
        ("k8s", k8s_job_executor, k8s_config),
    ):
        snippet = yaml.safe_load((DEPLOY / profile / "voxlake.yaml").read_text())
        settings = ExecutionSettings.model_validate(snippet["execution"])
        assert settings.executor == profile
        assert not _executor_config_errors(executor, config(settings)), profile


def test_the_k8s_values_serve_the_voxlake_location_with_the_lake_everywhere() -> None:
    from assets.executors import k8s_config
    from assets.services import DEFINITIONS_MODULE, LOCATION_NAME
    from schemas.project import ExecutionSettings

    values = yaml.safe_load((DEPLOY / "k8s" / "values.yaml").read_text())
    claim = yaml.safe_load((DEPLOY / "k8s" / "lake-pvc.yaml").read_text())
    snippet = yaml.safe_load((DEPLOY / "k8s" / "voxlake.yaml").read_text())
    settings = ExecutionSettings.model_validate(snippet["execution"])
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    # The location `voxlake run` submits to, from the definitions module.
    assert deployment["name"] == LOCATION_NAME
    assert deployment["dagsterApiGrpcArgs"] == ["-m", DEFINITIONS_MODULE]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["VOXLAKE_PROJECT"] == "/project"
    # One claim, ReadWriteMany, mounted alike by the code server, the run pods
    # (includeConfigInLaunchedRuns) and the step pods (the executor's config).
    assert claim["metadata"]["name"] == settings.k8s_lake_claim
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    step = k8s_config(settings)
    assert deployment["volumes"] == step["volumes"]
    assert deployment["volumeMounts"] == step["volume_mounts"]
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    assert values["telemetry"] == {"enabled": False}


def test_a_step_loading_a_project_it_cannot_see_names_the_host(tmp_path: Path) -> None:
    project = init_project(tmp_path / "proj")
    resource = VoxlakeProject(project_dir=str(project.directory))
    assert load_visible_project(resource).lake.root == project.lake.root

    missing = VoxlakeProject(project_dir=str(tmp_path / "not-mounted"))
    with pytest.raises(
        LakeNotVisibleError, match=re.escape("(the project folder) does not exist")
    ) as raised:
        load_visible_project(missing, host="worker-7")
    assert raised.value.host == "worker-7"
    assert raised.value.path == tmp_path / "not-mounted"


def test_a_lake_without_the_units_plans_is_not_the_shared_lake(tmp_path: Path) -> None:
    project = init_project(tmp_path / "proj")
    index = project.lake.units_index("libri")
    with pytest.raises(LakeNotVisibleError, match="no unit plan of source 'libri'"):
        check_lake_visible(project, units=["libri.train.00000"])
    index.parent.mkdir(parents=True)
    index.write_text("{}")
    check_lake_visible(project, units=["libri.train.00000", "libri.train.00001"])


@pytest.mark.slow
def test_a_worker_that_does_not_see_the_project_does_not_start(tmp_path: Path) -> None:
    home = tmp_path / "dagster-home"  # a Dagster home of its own: SQLite, nothing shared
    home.mkdir()
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "VOXLAKE_PROJECT": str(tmp_path / "not-mounted"),
        # Never reached: the check runs before the worker connects to its broker.
        "VOXLAKE_CELERY_BROKER": "redis://127.0.0.1:9/0",
        "VOXLAKE_CELERY_BACKEND": "redis://127.0.0.1:9/1",
    }
    process = _start(_worker_command("lost"), log, env=env, cwd=tmp_path)
    try:
        process.wait(timeout=120)
    finally:
        _stop(process)
    assert process.returncode != 0
    text = log.read_text(errors="replace")
    assert f"voxlake worker not started: host {socket.gethostname()!r}" in text, _tail(log)
    assert f"{tmp_path / 'not-mounted'} (the project folder) does not exist" in text
