"""Every worker checks that it sees the project's lake: at start-up, and before each unit step.

On one machine the lake is simply there. Under a cluster executor (`celery`,
`k8s`, see `deploy/`) a step runs on whichever worker took it, and that worker
must mount the project folder and its lake at the same path as every other
process of the deployment. A worker that does not would fail deep inside a
step with a bare `FileNotFoundError`, or worse, write a lake of its own that
nobody else reads. These checks fail first, naming the host and the path:

- `check_worker`, connected to Celery's `worker_init` when this module is
  imported (`dagster-celery worker start ... -i assets.lake_check`): a worker
  that does not see the project exits before it takes any step;
- `load_visible_project` / `check_lake_visible`, at the start of every per-unit
  step (`assets.units.materialize_units`): the step fails, and its retry policy
  (`execution.step_retries`) runs it again, on whichever worker takes it.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from assets.resources import VoxlakeProject
from pipelines.project import PROJECT_FILE, Project, ProjectError
from pipelines.units import source_of_unit

SCALE_OUT_DOC = "deploy/README.md"
PROJECT_ENV = "VOXLAKE_PROJECT"


class LakeNotVisibleError(RuntimeError):
    """The project folder or its lake is missing, or not writable, on this machine."""

    def __init__(self, host: str, path: Path, reason: str) -> None:
        self.host = host
        self.path = path
        self.reason = reason
        super().__init__(
            f"host {host!r} does not see the voxlake lake: {path} {reason}. Every process of "
            "a deployment (voxlake, the code server, the daemon, every worker) must mount "
            f"the project folder and its lake at the same path; see {SCALE_OUT_DOC}."
        )


def _problem(path: Path, *, writable: bool) -> str | None:
    """Why `path` is unusable as a folder here (None when it is fine)."""
    if not path.exists():
        return "does not exist"
    if not path.is_dir():
        return "is not a folder"
    if writable:
        if not os.access(path, os.W_OK | os.X_OK):
            return f"is not writable by uid {os.geteuid()}"
        # A read-only mount passes os.access for root on some systems; statvfs does not lie.
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "is on a read-only mount"
    return None


def check_project_folder(folder: Path, host: str | None = None) -> None:
    """Raise LakeNotVisibleError unless `folder` is a project folder seen from this machine."""
    host = host or socket.gethostname()
    reason = _problem(folder, writable=False)
    if reason is None and not (folder / PROJECT_FILE).is_file():
        reason = f"holds no {PROJECT_FILE}"
    if reason is not None:
        raise LakeNotVisibleError(host, folder, f"(the project folder) {reason}")


def check_lake_visible(
    project: Project, host: str | None = None, units: Iterable[str] = ()
) -> None:
    """Raise LakeNotVisibleError unless this machine sees the project and can write its lake.

    Checks the project folder (it holds `voxlake.yaml`) and the lake root and, for
    `units` (a step's partition keys), that the lake holds their sources' unit
    plans: a per-unit step runs after the inventory wrote them, so a lake without
    them is not the deployment's (an empty mount point where a share did not
    mount). Nothing is written; the check costs a few `stat` calls.
    """
    host = host or socket.gethostname()
    check_project_folder(project.directory, host)
    lake = project.lake
    reason = _problem(lake.root, writable=True)
    if reason is not None:
        raise LakeNotVisibleError(host, lake.root, reason)
    for source in sorted({source_of_unit(u) for u in units}):
        index = lake.units_index(source)
        if not index.is_file():
            raise LakeNotVisibleError(
                host,
                lake.root,
                f"holds no unit plan of source {source!r} ({index.relative_to(lake.root)}), "
                "which its inventory wrote: this is not the lake the deployment shares",
            )


def load_visible_project(
    resource: VoxlakeProject, units: Iterable[str] = (), host: str | None = None
) -> Project:
    """`resource.load()`, checked: the folder before its `voxlake.yaml` is read, then the lake.

    A step's first line: on a worker without the project mounted, the error names
    the host instead of only saying that `voxlake.yaml` is not found.
    """
    host = host or socket.gethostname()
    check_project_folder(Path(resource.project_dir), host)
    project = resource.load()
    check_lake_visible(project, host, units)
    return project


def check_worker(**_: object) -> None:
    """Celery `worker_init` handler: a worker that does not see the project does not start.

    A Celery worker loads the job of each step from `assets.definitions`, which
    reads `$VOXLAKE_PROJECT/voxlake.yaml`: on a worker without the project the
    task fails before any step code runs, so neither the step's check nor its
    retries get a chance. Started with `-i assets.lake_check` (deploy/celery),
    the worker checks the project and its lake once, before it takes any task,
    and exits naming the host and the path. (SystemExit: Celery logs and ignores
    an `Exception` raised by a signal handler.)
    """
    folder = os.environ.get(PROJECT_ENV)
    if not folder:
        raise SystemExit(
            f"voxlake worker not started on {socket.gethostname()!r}: ${PROJECT_ENV} is not "
            f"set; set it to the project folder, as mounted on this machine ({SCALE_OUT_DOC})"
        )
    try:
        load_visible_project(VoxlakeProject(project_dir=folder))
    except (LakeNotVisibleError, ProjectError) as error:
        raise SystemExit(f"voxlake worker not started: {error}") from error


# Only where Celery is loaded already (a worker imports its `-i` modules after Celery):
# every other process that imports this module does not pay for importing Celery.
if "celery" in sys.modules:
    from celery.signals import worker_init

    worker_init.connect(check_worker, weak=False)
