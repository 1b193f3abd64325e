"""Programs whose control flow is Rust, tuned by DSPy's own optimisers. The Rust side is
``dspex/src/optimize/``; ARCHITECTURE.md ("Optimising a Rust program") has the whole picture.

A ``ProgramHost`` lives in one session (one per optimiser run). It holds the student: a
``RustProgram``, a real ``dspy.Module`` whose predictors are real ``dspy.Predict`` /
``dspy.ChainOfThought`` modules at the paths the Rust program names them by, and whose ``forward``
asks Rust to run the program's ``forward`` (the session's Rust tool ``dspex.forward``). DSPy
optimisers copy the student, run copies on examples inside ``dspy.context(trace=[])``, and read
the trace; so each ``forward`` registers a token naming the copy it was called on and the context
it runs in (``contextvars``: DSPy's settings, the trace list among them), and the predictor calls
Rust makes while it runs carry the token: ``call_traced`` runs the copy's module at that path in
that context. The calls land on that run's copies, in that run's trace, however many runs and
forwards are in flight. The metric is the session's Rust tool ``dspex.metric``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import itertools
import json
import secrets
import threading
import weakref
from typing import Any

from snakepit_bridge.dspy_loading import load_dspy
from snakepit_bridge.errors import CallbackFailed, InvalidArgument, NotFound
from snakepit_bridge.state import apply_state, dump_state
from snakepit_bridge.threads import executor

FORWARD_TOOL = "dspex.forward"
METRIC_TOOL = "dspex.metric"
PROGRESS_TOOL = "dspex.progress"

# Hosts by id: a RustProgram (and every copy an optimiser makes of it) names its host by id, so
# copying a program copies a string. Weak: a host lives as long as its session keeps it.
HOSTS: weakref.WeakValueDictionary[str, ProgramHost] = weakref.WeakValueDictionary()

_OPTIMIZERS = {
    "LabeledFewShot": "dspy.teleprompt.LabeledFewShot",
    "BootstrapFewShot": "dspy.teleprompt.BootstrapFewShot",
    "BootstrapFewShotWithRandomSearch": "dspy.teleprompt.BootstrapFewShotWithRandomSearch",
    "COPRO": "dspy.teleprompt.COPRO",
    "MIPROv2": "dspy.teleprompt.MIPROv2",
    "GEPA": "dspy.teleprompt.GEPA",
    "SIMBA": "dspy.teleprompt.SIMBA",
}


class CompileCancelled(BaseException):
    """The Rust caller dropped the compilation: raised inside the optimiser's threads at their next
    call into Rust. A ``BaseException`` so that optimisers, which count ``Exception``s from a
    program as failed examples, let it through."""


class MetricFailed(BaseException):
    """The Rust metric failed (an error, a panic, NaN). Ends the compilation with the metric's
    message instead of being counted as one failed example."""


def _container_class() -> type:
    dspy = load_dspy()

    class Container(dspy.Module):
        """A nested Rust module: holds predictors, never runs on its own."""

        def forward(self, **kwargs: Any) -> Any:
            raise InvalidArgument("a nested Rust module runs only through its program's forward")

    return Container


def _rust_program_class() -> type:
    dspy = load_dspy()

    class RustProgram(dspy.Module):
        """A DSPy module whose ``forward`` is the Rust program's."""

        def __init__(self, host_id: str) -> None:
            super().__init__()
            self.host_id = host_id

        def forward(self, **kwargs: Any) -> Any:
            return _host(self.host_id).forward(self, kwargs)

    return RustProgram


@functools.cache
def classes() -> tuple[type, type]:
    return _rust_program_class(), _container_class()


def _host(host_id: str) -> ProgramHost:
    host = HOSTS.get(host_id)
    if host is None:
        raise CallbackFailed(f"the optimiser run {host_id} is over (its session was closed)")
    return host


def _set_path(root: Any, path: str, module: Any) -> None:
    """``root.a.b = module`` for ``path`` ``a.b``, making the containers between."""
    _, container = classes()
    *parents, last = path.split(".")
    node = root
    for part in parents:
        child = node.__dict__.get(part)
        if child is None:
            child = container()
            setattr(node, part, child)
        node = child
    if last in node.__dict__:
        raise InvalidArgument(f"two modules at path {path!r}")
    setattr(node, last, module)


def _get_path(root: Any, path: str) -> Any:
    node = root
    for part in path.split(".") if path else []:
        node = node.__dict__.get(part)
        if node is None:
            raise NotFound(f"the program has no module at {path!r}")
    return node


class ProgramHost:
    """One optimiser run of a Rust program, in one session. Created by the Rust side with
    ``modules``: for each predictor module of the program, a map with its ``path``, ``class``
    (``dspy.Predict`` or ``dspy.ChainOfThought``), ``signature_hash`` and ``signature`` (the
    encoded ``SignatureSpec``), ``state`` (its tuned state as JSON text, or empty) and, when the
    predictor has its own LM, ``lm`` (an encoded ``LmConfig``)."""

    # DspyRuntime.create passes ``session=`` and ``runtime=`` to classes that ask for them.
    snakepit_context = True

    def __init__(self, modules: list[dict[str, Any]], *, session: Any, runtime: Any) -> None:
        self.id = secrets.token_hex(8)
        self.session = session
        self.loop = asyncio.get_running_loop()
        self._tokens = itertools.count(1)
        self._forwards: dict[str, tuple[Any, contextvars.Context]] = {}
        self._waiting: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()
        self.cancelled = False
        self.metric_calls = 0
        self.trials = 0
        rust_program, _ = classes()
        self.student = rust_program(self.id)
        if len(modules) == 1 and not modules[0]["path"]:
            # A program that is one Predict or ChainOfThought: DSPy's own forward is the same,
            # and DSPy names its predictor as the Rust side expects (`self`, `predict`).
            self.student = self._module(runtime, modules[0])
            modules = []
        for entry in modules:
            if not entry["path"]:
                raise InvalidArgument("a Rust program's module needs a path")
            _set_path(self.student, entry["path"], self._module(runtime, entry))
        HOSTS[self.id] = self

    @staticmethod
    def _module(runtime: Any, entry: dict[str, Any]) -> Any:
        from snakepit_bridge.state import parse_state

        spec = runtime.pb2.SignatureSpec.FromString(entry["signature"])
        signature = runtime.signature(entry["signature_hash"], spec)
        module = runtime.create(entry["class"], signature, [], {}, {}, None)
        if entry.get("state"):
            apply_state(module, parse_state(entry["state"]))
        if entry.get("lm"):
            # The predictor's own LM (after the state, whose `lm` is empty).
            from snakepit_bridge.lm import build_lm

            config = runtime.pb2.LmConfig.FromString(entry["lm"])
            module.set_lm(build_lm(runtime.pb2, config).lm)
        return module

    # -- Rust → Python: predictor calls of a forward in flight --------------------------------

    async def call_traced(self, token: str, path: str, **inputs: Any) -> Any:
        """Runs the module at ``path`` of the program copy whose ``forward`` issued ``token``, in
        that forward's context (its trace, its LM): what a Python ``forward`` calling
        ``self.<path>(**inputs)`` would do."""
        with self._lock:
            entry = self._forwards.get(token)
        if entry is None:
            raise NotFound(f"no forward {token!r} in flight in this optimiser run")
        program, context = entry
        module = _get_path(program, path)
        # A copy of the context: the same values (the trace list is shared, and appended to), and
        # predictors of one forward may run at once.
        run = functools.partial(context.copy().run, module, **inputs)
        return await self.loop.run_in_executor(executor(), run)

    # -- Python → Rust: the program's forward and the metric ----------------------------------

    def _call_rust(self, tool: str, arguments: dict[str, Any]) -> Any:
        """Calls a Rust tool of the session from an optimiser thread, waiting for its answer."""
        if self.cancelled:
            raise CompileCancelled()
        try:
            if asyncio.get_running_loop() is self.loop:
                raise InvalidArgument(
                    "a Rust program's forward was called on the worker's event loop; "
                    "call it from a thread (optimisers do)"
                )
        except RuntimeError:
            pass  # no loop in this thread: the normal case
        channel = self.session.callbacks
        if channel is None:
            raise CallbackFailed("the Rust side of this optimiser run is not connected")
        future = asyncio.run_coroutine_threadsafe(channel.call(tool, arguments), self.loop)
        with self._lock:
            self._waiting.add(future)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise CompileCancelled() from None
        finally:
            with self._lock:
                self._waiting.discard(future)

    def forward(self, program: Any, inputs: dict[str, Any]) -> Any:
        dspy = load_dspy()
        token = f"{self.id}-{next(self._tokens)}"
        with self._lock:
            self._forwards[token] = (program, contextvars.copy_context())
        try:
            outputs = self._call_rust(FORWARD_TOOL, {"token": token, "inputs": inputs})
        finally:
            with self._lock:
                self._forwards.pop(token, None)
        if not isinstance(outputs, dict):
            raise InvalidArgument(f"the Rust forward returned {type(outputs).__name__}, not a map")
        return dspy.Prediction(**outputs)

    def metric(self, example: Any, prediction: Any, trace: Any = None, *_: Any, **__: Any) -> float:
        self.metric_calls += 1
        arguments = {
            "example": _fields(example),
            "prediction": _fields(prediction),
            "traced": trace is not None,
        }
        try:
            answer = self._call_rust(METRIC_TOOL, arguments)
        except CallbackFailed as exc:
            raise MetricFailed(str(exc)) from None
        if not isinstance(answer, dict):
            raise MetricFailed(f"the Rust metric answered {type(answer).__name__}, not a map")
        if "output_error" in answer:
            # The program's output, not the metric: a failed example, as DSPy counts them.
            raise InvalidArgument(answer["output_error"])
        if "metric_error" in answer:
            raise MetricFailed(answer["metric_error"])
        return float(answer["score"])

    def trial(self, score: Any) -> None:
        """One evaluation of a candidate program (a trial of MIPROv2, a candidate of COPRO or of
        random search) ended: tells Rust, without waiting, when it asked for progress."""
        channel = self.session.callbacks
        if channel is None or PROGRESS_TOOL not in channel.tools or self.cancelled:
            return
        self.trials += 1
        # DSPy's Evaluate scores in percent; the Rust side scores as the metric does.
        value = float(score) / 100.0 if isinstance(score, (int, float)) else None
        future = asyncio.run_coroutine_threadsafe(
            channel.call(PROGRESS_TOOL, {"trial": self.trials, "score": value}), self.loop
        )
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def cancel(self) -> None:
        """Stops the run: every optimiser thread waiting on Rust, or calling it next, gets
        ``CompileCancelled``."""
        self.cancelled = True
        with self._lock:
            waiting = list(self._waiting)
        for future in waiting:
            future.cancel()

    # -- the run ------------------------------------------------------------------------------

    async def compile(
        self,
        optimizer: str,
        init: dict[str, Any],
        compile_kwargs: dict[str, Any],
        trainset: list[dict[str, Any]],
        valset: list[dict[str, Any]] | None,
        input_names: list[str],
    ) -> dict[str, Any]:
        """Runs ``optimizer`` (one of DSPy's, by name) on the student and returns the tuned state
        of every predictor, by DSPy name. Runs in a thread; cancelling the call stops it."""
        from snakepit_bridge.lm import build_lm

        runtime_pb2 = self._pb2()
        if optimizer not in _OPTIMIZERS:
            raise InvalidArgument(
                f"unknown optimiser {optimizer!r}; one of {', '.join(sorted(_OPTIMIZERS))}"
            )
        if not trainset:
            raise InvalidArgument("the trainset is empty")

        def built(value: Any) -> Any:
            # An LM crosses as {"$lm": encoded LmConfig}.
            if isinstance(value, dict):
                if set(value) == {"$lm"}:
                    config = runtime_pb2.LmConfig.FromString(value["$lm"])
                    return build_lm(runtime_pb2, config).lm
                return {k: built(v) for k, v in value.items()}
            if isinstance(value, list):
                return [built(v) for v in value]
            return value

        init = built(init)
        compile_kwargs = built(compile_kwargs)
        cls = _optimizer_class(optimizer)
        if init.pop("$metric", False):
            init["metric"] = self.metric
        dspy = load_dspy()

        def examples(rows: list[dict[str, Any]]) -> list[Any]:
            return [dspy.Example(**row).with_inputs(*input_names) for row in rows]

        train = examples(trainset)
        if valset is not None:
            compile_kwargs["valset"] = examples(valset)

        def run() -> dict[str, Any]:
            try:
                optimizer_object = cls(**init)
            except TypeError as exc:
                raise InvalidArgument(f"cannot create {optimizer}: {exc}") from None
            callbacks = [*(dspy.settings.callbacks or []), _trial_callback_class()(self)]
            try:
                with dspy.context(callbacks=callbacks):
                    compiled = optimizer_object.compile(
                        self.student, trainset=train, **compile_kwargs
                    )
            except MetricFailed as exc:
                raise CallbackFailed(f"the metric failed: {exc}") from None
            except CompileCancelled:
                raise CallbackFailed("the compilation was cancelled") from None
            state = json.dumps(dump_state(compiled), default=str)
            return {"state": state, "metric_calls": self.metric_calls}

        context = contextvars.copy_context()
        future = self.loop.run_in_executor(executor(), functools.partial(context.run, run))
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self.cancel()
            await asyncio.wait([future])
            raise

    def _pb2(self) -> Any:
        from snakepit_bridge.messages import pb2

        return pb2


@functools.cache
def _trial_callback_class() -> type:
    from dspy.utils.callback import BaseCallback

    class TrialCallback(BaseCallback):
        """Reports each `dspy.Evaluate` of a run (its candidates and trials) to its host."""

        def __init__(self, host: ProgramHost) -> None:
            self.host = host

        def on_evaluate_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
            if exception is None:
                self.host.trial(getattr(outputs, "score", None))

    return TrialCallback


def _optimizer_class(name: str) -> Any:
    import importlib

    module_name, _, attribute = _OPTIMIZERS[name].rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _fields(value: Any) -> dict[str, Any]:
    """The fields of a ``dspy.Example`` or ``dspy.Prediction`` as plain data."""
    store = getattr(value, "_store", None)
    if isinstance(store, dict):
        return {k: v for k, v in store.items() if not k.startswith("dspy_")}
    if isinstance(value, dict):
        return dict(value)
    raise InvalidArgument(f"cannot read the fields of a {type(value).__name__}")
