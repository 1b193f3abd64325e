"""Connects to the Ray cluster at argv[1], starts `argv[2]` actors, asks each for its pid, and
prints one JSON line: the pids and the cluster's live actors (from Ray's state API)."""

import json
import os
import sys

import ray
from ray.util.state import list_actors


@ray.remote(num_cpus=0)
class Probe:
    def pid(self) -> int:
        return os.getpid()


def main() -> None:
    # The state API finds the cluster by RAY_ADDRESS, not by what it sees in /tmp/ray.
    os.environ["RAY_ADDRESS"] = sys.argv[1]
    ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
    actors = [Probe.remote() for _ in range(int(sys.argv[2]))]
    pids = ray.get([a.pid.remote() for a in actors])
    alive = [a for a in list_actors(filters=[("state", "=", "ALIVE")])]
    print(json.dumps({"pids": pids, "alive": len(alive)}))


if __name__ == "__main__":
    main()
