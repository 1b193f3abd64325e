"""What Ray's state API shows of a cluster, for the Ray placement tests.

``python dspex_ray_state.py ADDRESS alive PREFIX``: one JSON line, the names of the live actors
(namespace ``snakepit``) whose names start with PREFIX.
``python dspex_ray_state.py ADDRESS dump``: everything the state API (and so the dashboard) shows
of actors, tasks, jobs, objects, workers, placement groups and nodes, with the actors' logs.
``python dspex_ray_state.py ADDRESS kill NAME``: ``ray.kill`` of the actor NAME.
``python dspex_ray_state.py ADDRESS detached NAME``: starts a detached actor NAME (it outlives
this script), as the actor of a run whose driver Ray still counts as alive.
"""

import json
import os
import sys

import ray
from ray.util import state


def alive(prefix: str) -> None:
    actors = state.list_actors(filters=[("state", "=", "ALIVE")], limit=10000)
    names = sorted(a.name for a in actors if (a.name or "").startswith(prefix))
    print(json.dumps({"names": names}))


def dump() -> None:
    shown = []
    for listing in (
        state.list_actors, state.list_tasks, state.list_jobs, state.list_objects,
        state.list_workers, state.list_placement_groups, state.list_nodes,
    ):
        shown.append(repr(listing(detail=True, limit=10000)))
    for actor in state.list_actors(detail=True, limit=10000):
        try:
            shown.extend(state.get_log(actor_id=actor.actor_id, tail=100000))
        except Exception as exc:  # noqa: BLE001 - an actor without a log yet
            shown.append(f"no log for {actor.actor_id}: {exc}")
    print(json.dumps({"shown": "\n".join(shown)}))


def kill(name: str) -> None:
    ray.kill(ray.get_actor(name, namespace="snakepit"), no_restart=True)
    print(json.dumps({"killed": name}))


@ray.remote(num_cpus=0)
class Lingering:
    def ready(self) -> bool:
        return True


def detached(name: str) -> None:
    actor = Lingering.options(name=name, lifetime="detached").remote()
    ray.get(actor.ready.remote())
    print(json.dumps({"started": name}))


def main() -> None:
    address, command, *rest = sys.argv[1:]
    # The state API finds its cluster by this, not by the clusters it sees in /tmp/ray (another
    # test's, in another network namespace, may be there too).
    os.environ["RAY_ADDRESS"] = address
    ray.init(address=address, namespace="snakepit", log_to_driver=False, logging_level="ERROR")
    {"alive": alive, "dump": dump, "kill": kill, "detached": detached}[command](*rest)


if __name__ == "__main__":
    main()
