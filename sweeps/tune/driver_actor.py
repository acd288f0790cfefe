"""The sweep's small service actors (the dense cache's leases, the packs' stop board): started
by the driver on its own node, restarted by Ray if they die, and never the reason a trial fails.

Such an actor needs no CPU, so Ray may place it on any node. Placed on a worker node that then
dies, every later call of every trial would fail (``The actor ... died``), and each retry of
those trials the same way, until they ended ``error`` whatever ``max_failures`` allowed. So the
actor lives on the driver's node (``NodeAffinitySchedulingStrategy``, soft: anywhere if that
node cannot host it), whose loss ends the sweep anyway, and Ray restarts it
(``max_restarts=-1``) with its calls retried (``max_task_retries=-1``). Its state is advisory
(a lease, a decision to post): callers treat an unreachable service as "no answer"
(:func:`unreachable`) and go on without it.
"""

from __future__ import annotations

from typing import Any


def unreachable() -> tuple[type[BaseException], ...]:
    """What a call of a service actor raises when the actor is gone or not started: Ray's
    ``RayActorError`` (died, unavailable) and ``ValueError`` (``ray.get_actor``: no such name)."""
    from ray.exceptions import RayActorError

    return (RayActorError, ValueError)


def start_service(cls: type, name: str) -> Any:
    """Actor ``name`` of class ``cls`` (the running one if it exists) on the driver's node.
    Hold the handle for as long as the sweep runs: a named actor that nobody references is
    destroyed (not detached: it ends with the driver)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    return ray.remote(cls).options(
        name=name, get_if_exists=True, num_cpus=0, max_restarts=-1, max_task_retries=-1,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=True),
    ).remote()
