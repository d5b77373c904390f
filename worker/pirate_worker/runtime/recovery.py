"""Put the jobs of a worker that died mid-job back where they belong, at once.

RQ finds abandoned jobs by itself once their heartbeat expires (about 70 s with our worker);
the supervisor knows sooner, because it saw its child die, and calls this right away. A worker
that died between dequeuing a job and starting it leaves no trace of whose it was; the
supervisor's periodic sweep (:class:`StrandedJobs`) puts those back.
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


#: A job sits in its queue's intermediate list only between a worker's dequeue (LMOVE) and the
#: pipeline that starts it, milliseconds apart. Seen there, unstarted, for this long, it is stranded.
STRANDED_AFTER_S = 15.0


class StrandedJobs:
    """Requeue jobs a worker dequeued and died before starting (SIGKILL, OOM, Redis lost mid-way).

    RQ only notices these when its maintenance has seen them twice a minute apart, and then
    *fails* them into the retry schedule (first retry 60 s later). A job never started, so it is
    put back at the front of its queue untouched. State is in memory: a job counts as stranded
    when consecutive sweeps at least ``grace_s`` apart both find it; several supervisors may
    sweep the same queue, and removing it from the intermediate list decides which one requeues.
    """

    def __init__(self, grace_s: float = STRANDED_AFTER_S) -> None:
        self.grace_s = grace_s
        self._seen: dict[tuple[str, str], float] = {}

    def sweep(self, connection: Redis, queue_names: tuple[str, ...], now: float) -> list[str]:
        """One pass at monotonic time ``now``; returns the ids requeued."""
        suspects: dict[tuple[str, str], float] = {}
        requeued = []
        for name in queue_names:
            queue = Queue(name, connection=connection, serializer=JSONSerializer)
            waiting = queue.intermediate_queue.get_job_ids()
            if not waiting:
                continue
            started = set(queue.started_job_registry.get_job_ids(cleanup=False))
            for job_id in waiting:
                if job_id in started:
                    continue
                first_seen = self._seen.get((name, job_id), now)
                if now - first_seen < self.grace_s:
                    suspects[(name, job_id)] = first_seen
                elif self._requeue(connection, queue, job_id):
                    requeued.append(job_id)
        self._seen = suspects
        return requeued

    @staticmethod
    def _requeue(connection: Redis, queue: Queue, job_id: str) -> bool:
        if not connection.lrem(queue.intermediate_queue.key, 1, job_id):
            return False  # another supervisor (or the worker, late) took it
        job = queue.fetch_job(job_id)
        if job is None or job.get_status() != JobStatus.QUEUED:
            return False
        queue._enqueue_job(job, at_front=True)
        log.warning(
            "job %s: dequeued from %s by a worker that died before it started; requeued", job_id, queue.name
        )
        return True
