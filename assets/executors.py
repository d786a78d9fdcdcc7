"""The executor every job runs its steps with, chosen by `execution.executor` in voxlake.yaml.

`in_process` (the default) runs a run's steps inside its run worker: on one
machine the parallelism comes from concurrent runs (`max_concurrent_runs` in
`dagster.yaml`) and a run pays one process start for all its units. `multiprocess`
starts a process per step; `celery` sends steps to Celery workers through a broker
(`deploy/celery`); `k8s` starts a pod per step (`deploy/k8s`). The integration
packages are imported only when their executor is chosen.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from schemas.project import ExecutionSettings, Executor


def job_executor(settings: ExecutionSettings) -> dg.ExecutorDefinition:
    """The configured executor, with its configuration bound."""
    if settings.executor == Executor.in_process:
        return dg.in_process_executor
    if settings.executor == Executor.multiprocess:
        return dg.multiprocess_executor
    if settings.executor == Executor.celery:
        try:
            from dagster_celery import celery_executor
        except ImportError as error:
            raise ImportError(
                "execution.executor is `celery` but dagster-celery is not installed: "
                "pip install 'voxlake[cluster]'"
            ) from error
        return celery_executor.configured(celery_config(settings))
    if settings.executor == Executor.k8s:
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as error:
            raise ImportError(
                "execution.executor is `k8s` but dagster-k8s is not installed: "
                "pip install 'voxlake[cluster]'"
            ) from error
        return k8s_job_executor.configured(k8s_config(settings))
    raise ValueError(f"unknown executor {settings.executor!r}")


def celery_config(settings: ExecutionSettings) -> dict[str, Any]:
    """Configuration of `celery_executor`: broker, backend, and acks that survive a lost worker.

    A step is acknowledged only when it finished (`task_acks_late`) and is handed
    back to the queue when its worker dies (`task_reject_on_worker_lost`), so a
    worker killed in the middle of a unit leaves the step to another worker; one
    task per worker process at a time (`worker_prefetch_multiplier`), so a busy
    worker does not hoard the queue.
    """
    return {
        "broker": settings.celery_broker,
        "backend": settings.celery_backend,
        "config_source": {
            "task_acks_late": True,
            "task_reject_on_worker_lost": True,
            "worker_prefetch_multiplier": 1,
            "broker_connection_retry_on_startup": True,
        },
    }


def k8s_config(settings: ExecutionSettings) -> dict[str, Any]:
    """Configuration of `k8s_job_executor`: namespace, image, the lake's volume, GPU requests.

    The project (and so its lake) is mounted from one PersistentVolumeClaim at the
    same path in every step pod: every worker must see the same lake. Steps in the
    `gpu` pool request one NVIDIA GPU each (`gpu_step_tags`).
    """
    config: dict[str, Any] = {
        "job_namespace": settings.k8s_namespace,
        "volumes": [
            {"name": "lake", "persistentVolumeClaim": {"claimName": settings.k8s_lake_claim}}
        ],
        "volume_mounts": [{"name": "lake", "mountPath": "/project"}],
        "env_vars": ["VOXLAKE_PROJECT=/project", "DAGSTER_HOME"],
    }
    if settings.k8s_image:
        config["job_image"] = settings.k8s_image
    return config


def gpu_step_tags(settings: ExecutionSettings) -> dict[str, Any]:
    """Op tags of the steps in the `gpu` pool: one NVIDIA GPU per step pod under `k8s`."""
    if settings.executor != Executor.k8s or not settings.k8s_gpu_requests:
        return {}
    return {
        "dagster-k8s/config": {
            "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}
        }
    }
