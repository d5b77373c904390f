"""Put the jobs of a worker that died mid-job back where they belong, at once.

RQ finds abandoned jobs by itself once their heartbeat expires (about 70 s with our worker);
the supervisor knows sooner, because it saw its child die, and calls this right away.
"""

from __future__ import annotations

import logging

from redis import Redis
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.serializers import JSONSerializer

log = logging.getLogger(__name__)


def recover_dead_worker(connection: Redis, worker_name: str, reason: str) -> list[str]:
    """Requeue (one retry used) or fail each job the dead worker was running; unregister it.

    Returns the ids of the jobs handled. A job with no retries left fails with ``reason``, so a
    record that keeps killing its worker cannot loop forever.
    """
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + worker_name, connection=connection)
    if worker is None:
        return []
    handled = []
    for execution in worker.get_current_executions(refresh=True):
        try:
            job = Job.fetch(execution.job_id, connection=connection, serializer=JSONSerializer)
        except Exception:
            log.warning("dead worker %s: job %s is gone", worker_name, execution.job_id)
            continue
        if job.get_status() != JobStatus.STARTED:
            continue
        queue = Queue(job.origin, connection=connection, serializer=JSONSerializer)
        with connection.pipeline() as pipe:
            execution.delete(job=job, pipeline=pipe)
            pipe.zrem(queue.started_job_registry.key, execution.composite_key)
            if job.retries_left:
                job.retries_left -= 1
                queue._enqueue_job(job, pipeline=pipe, at_front=True)
                log.warning(
                    "worker %s died (%s): job %s requeued, %d retries left",
                    worker_name,
                    reason,
                    job.id,
                    job.retries_left,
                )
            else:
                record_job_failure(job, f"worker {worker_name} died ({reason}) while running this job", pipe)
                log.error("worker %s died (%s): job %s failed, no retries left", worker_name, reason, job.id)
            pipe.execute()
        handled.append(job.id)
    worker.register_death()
    return handled
