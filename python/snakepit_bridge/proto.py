"""Access to the generated protobuf and gRPC modules.

The stubs are generated from the embedded ``.proto`` when the worker's files are materialised (by
the Rust bridge, with grpcio-tools) and put on ``sys.path`` as top-level modules. For a developer
running pytest in the repository, :func:`ensure_stubs` generates them into a temporary directory.
"""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PB2 = "snakepit_bridge_pb2"
PB2_GRPC = "snakepit_bridge_pb2_grpc"


def generate_stubs(proto_dir: Path, out_dir: Path) -> None:
    """Generates the Python stubs of ``proto_dir/snakepit_bridge.proto`` into ``out_dir``."""
    from grpc_tools import protoc  # only needed at provisioning time

    out_dir.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{proto_dir}",
            f"-I{include}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(proto_dir / "snakepit_bridge.proto"),
        ]
    )
    if code != 0:
        raise RuntimeError(f"grpc_tools.protoc failed with status {code}")


def ensure_stubs() -> None:
    """Makes the stubs importable, generating them from the repository's proto/ if needed."""
    try:
        importlib.import_module(PB2)
        return
    except ImportError:
        pass
    repo_proto = Path(__file__).resolve().parents[2] / "proto"
    if not (repo_proto / "snakepit_bridge.proto").exists():
        raise ImportError(
            "the generated protobuf stubs are not on sys.path and no proto/ directory was found; "
            "start workers through the Rust bridge, which generates them"
        )
    out = Path(tempfile.mkdtemp(prefix="snakepit-stubs-"))
    # Generated for this process (and the processes it starts) only: gone when it exits.
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    generate_stubs(repo_proto, out)
    sys.path.insert(0, str(out))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(out), os.environ.get("PYTHONPATH")]))


def pb2() -> ModuleType:
    ensure_stubs()
    return importlib.import_module(PB2)


def pb2_grpc() -> ModuleType:
    ensure_stubs()
    return importlib.import_module(PB2_GRPC)
