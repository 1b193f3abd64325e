"""The DSPy half of ``BridgeService``: instances in sessions, their calls and batches, and
session-less modules (``RunModule``). The generic half (sessions, tools, callbacks, variables)
is ``server.py``; ``BridgeServicer`` there combines both.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
from typing import Any

from snakepit_bridge.errors import InvalidArgument, NotFound
from snakepit_bridge.instance import forget_history
from snakepit_bridge.messages import failure as _failure
from snakepit_bridge.messages import pb2
from snakepit_bridge.sessions import Session
from snakepit_bridge.tracing import Traced
from snakepit_bridge.values import ObjectHandle, fill, from_proto, map_from_proto, to_proto


def _type_name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _fill_result(msg: Any, result: Any, session: Session | None) -> None:
    """A call's result, written into the ``Value`` message ``msg``: predictions as maps of their
    fields, plain data as is, any other object kept in the session and returned as a handle."""
    try:
        store = getattr(result, "_store", None)
        if isinstance(store, dict) and hasattr(result, "completions"):
            # A prediction: its fields, without a stop at every other kind of value first.
            fill(pb2, msg, store)
        else:
            fill(pb2, msg, result)
    except InvalidArgument:
        if session is None:
            raise
        msg.Clear()
        fill(pb2, msg, ObjectHandle(session.keep(result), _type_name(result)))


def _result_value(result: Any, session: Session | None) -> Any:
    value = pb2.Value()
    _fill_result(value, result, session)
    return value


def _history(record: Any) -> list[Any]:
    return [
        pb2.HistoryEntry(
            messages=to_proto(pb2, entry["messages"]),
            outputs=entry["outputs"],
            model=entry["model"],
        )
        for entry in record.history
    ]


class DspyService:
    """The DSPy RPCs. Expects ``self.sessions`` (a ``SessionStore``) and ``self.dspy`` (a
    ``DspyRuntime``)."""

    sessions: Any
    dspy: Any


    async def CreateInstance(self, request: Any, context: Any) -> Any:
        try:
            session = self.sessions.get(request.session_id)
            args = from_proto(pb2, pb2.Value(list=request.args)) if request.HasField("args") else []
            kwargs = map_from_proto(pb2, request.kwargs)
            signature = None
            if request.HasField("signature"):
                spec = request.signature
                key = request.signature_hash or spec.SerializeToString(deterministic=True)
                if spec.outputs or spec.inputs:
                    signature = self.dspy.signature(key, spec)
            instance_lm = None
            if request.HasField("lm") and request.lm.WhichOneof("kind"):
                from snakepit_bridge.lm import build_lm

                instance_lm = build_lm(pb2, request.lm)
            obj = self.dspy.create(
                request.class_path, signature, args, kwargs, session.objects, session
            )
            object_id = session.keep(obj)
            if instance_lm is not None:
                session.instance_lms[object_id] = instance_lm
            return pb2.InstanceResponse(
                instance=pb2.ObjectRef(id=object_id, type_name=_type_name(obj))
            )
        except Exception as exc:
            return pb2.InstanceResponse(error=_failure(exc))

    def _lm_for(self, target: Any, options: Any, instance_lm: Any) -> Any:
        try:
            return self.dspy.lm_for(options.lm if options.HasField("lm") else None, instance_lm)
        except InvalidArgument:
            # Plain objects need no LM; a DSPy module does, and the error should say where to
            # configure one from Rust rather than DSPy's `dspy.configure` advice.
            dspy = sys.modules.get("dspy")
            if dspy is not None and isinstance(target, dspy.Module):
                raise
            if options.HasField("lm") and options.lm.WhichOneof("kind"):
                raise
            return None

    @staticmethod
    def _response(
        session: Session | None, result: Any, entries: Any, options: Any, traced: Traced | None = None
    ) -> Any:
        from snakepit_bridge.prediction import record_of

        record = record_of(entries, with_history=options.history)
        response = pb2.CallResponse()
        _fill_result(response.value, result, session)
        usage = response.usage
        for key, count in record.usage.items():
            setattr(usage, key, count)
        if entries:
            usage.model = str(entries[-1].get("model") or "")
        if options.history:
            response.history.extend(_history(record))
        if traced is not None and traced.root is not None:
            traced.root.attributes.update(
                {
                    "gen_ai.usage.input_tokens": usage.prompt_tokens,
                    "gen_ai.usage.output_tokens": usage.completion_tokens,
                    "dspy.lm_calls": usage.lm_calls,
                }
            )
        return response

    @staticmethod
    def _traced(options: Any, target: Any, lm: Any, method: str = "__call__") -> Traced:
        attributes: dict[str, Any] = {
            "dspy.module": _type_name(target),
            "process.pid": os.getpid(),
        }
        signature = getattr(target, "signature", None)
        if signature is not None:
            attributes["dspy.signature"] = getattr(signature, "__name__", "")
        if method not in ("", "__call__"):
            attributes["dspy.method"] = method
        model = getattr(getattr(lm, "lm", None), "model", None)
        if model:
            attributes["gen_ai.request.model"] = str(model)
        return Traced(options, "dspy.worker", **attributes)

    @staticmethod
    def _with_spans(response: Any, traced: Traced, error: BaseException | None = None) -> Any:
        """Ends the call's root span and puts the recorded spans in the response."""
        if traced.trace is not None:
            if traced.root is not None and not traced.root.end:
                traced.root.finish(error)
            response.spans.extend(traced.trace.to_proto(pb2, to_proto))
        return response

    async def _call(
        self, session: Session | None, target: Any, instance_lm: Any, method: str,
        args: list[Any], kwargs: dict[str, Any], options: Any,
    ) -> Any:
        lm = self._lm_for(target, options, instance_lm)
        with self._traced(options, target, lm, method) as traced:
            try:
                result, entries = await self.dspy.call(
                    target, method, args, kwargs, lm, traced.callbacks()
                )
            except Exception as exc:
                return self._with_spans(pb2.CallResponse(error=_failure(exc)), traced, exc)
            response = self._response(session, result, entries, options, traced)
            return self._with_spans(response, traced)

    def _instance(self, session: Session, instance_id: str) -> Any:
        try:
            return session.objects[instance_id]
        except KeyError:
            raise NotFound(f"no object {instance_id!r} in session {session.session_id!r}") from None

    async def CallInstance(self, request: Any, context: Any) -> Any:
        try:
            session = self.sessions.get(request.session_id)
            target = self._instance(session, request.instance_id)
            resolve = self.dspy.resolve_arguments
            args = resolve(from_proto(pb2, pb2.Value(list=request.args)), session.objects)
            kwargs = resolve(map_from_proto(pb2, request.kwargs), session.objects)
            return await self._call(
                session, target, session.instance_lms.get(request.instance_id),
                request.method, args, kwargs, request.options,
            )
        except Exception as exc:
            return pb2.CallResponse(error=_failure(exc))

    async def GetAttribute(self, request: Any, context: Any) -> Any:
        try:
            session = self.sessions.get(request.session_id)
            target = self._instance(session, request.instance_id)
            if not hasattr(target, request.name):
                raise NotFound(f"{type(target).__name__} has no attribute {request.name!r}")
            return pb2.CallResponse(value=_result_value(getattr(target, request.name), session))
        except Exception as exc:
            return pb2.CallResponse(error=_failure(exc))

    async def DeleteInstance(self, request: Any, context: Any) -> Any:
        try:
            session = self.sessions.get(request.session_id)
            self._instance(session, request.instance_id)
            del session.objects[request.instance_id]
            session.instance_lms.pop(request.instance_id, None)
            return pb2.CallResponse(value=to_proto(pb2, None))
        except Exception as exc:
            return pb2.CallResponse(error=_failure(exc))

    async def BatchCall(self, request: Any, context: Any) -> Any:
        from snakepit_bridge.instance import DEFAULT_BATCH_CONCURRENCY

        try:
            session = self.sessions.get(request.session_id)
            target = self._instance(session, request.instance_id)
            instance_lm = session.instance_lms.get(request.instance_id)
            inputs = [map_from_proto(pb2, m) for m in request.inputs]
        except Exception as exc:
            return pb2.BatchResponse(error=_failure(exc))
        limit = asyncio.Semaphore(request.max_concurrency or DEFAULT_BATCH_CONCURRENCY)

        async def one(kwargs: dict[str, Any]) -> Any:
            async with limit:
                try:
                    return await self._call(
                        session, target, instance_lm, "__call__", [], kwargs, request.options
                    )
                except Exception as exc:
                    return pb2.CallResponse(error=_failure(exc))

        results = await asyncio.gather(*(one(kwargs) for kwargs in inputs))
        return pb2.BatchResponse(results=results)

    def _module(self, request: Any) -> Any:
        kwargs = map_from_proto(pb2, request.kwargs)
        spec = request.signature if request.HasField("signature") else None
        return self.dspy.module_for(
            request.class_path, request.signature_hash, spec, kwargs,
            request.state_hash, request.state,
        )

    def RunModuleInline(self, request: Any) -> Any:
        """``RunModule`` run to its end right now when the module allows it (see
        ``DspyRuntime.runs_now``), returning the response. Otherwise a function that starts the
        call as a coroutine with what was worked out here (the module, its LM), which the fast
        path runs as a task: asked first, a call that can finish at once needs no task and no trip
        through the event loop, and one that cannot is not resolved twice."""
        try:
            module = self._module(request)
            lm = self._lm_for(module, request.options, None)
            if not self.dspy.runs_now(module, lm):
                return functools.partial(self._run_module, module, lm, request)
        except Exception as exc:
            return pb2.CallResponse(error=_failure(exc))
        with self._traced(request.options, module, lm) as traced:
            try:
                inputs = map_from_proto(pb2, request.inputs)
                try:
                    result, entries = self.dspy.call_now(module, inputs, lm, traced.callbacks())
                finally:
                    forget_history(module)
                response = self._response(None, result, entries, request.options, traced)
                return self._with_spans(response, traced)
            except Exception as exc:
                return self._with_spans(pb2.CallResponse(error=_failure(exc)), traced, exc)

    async def _run_module(self, module: Any, lm: Any, request: Any) -> Any:
        with self._traced(request.options, module, lm) as traced:
            try:
                inputs = map_from_proto(pb2, request.inputs)
                try:
                    result, entries = await self.dspy.call(
                        module, "__call__", [], inputs, lm, traced.callbacks()
                    )
                finally:
                    forget_history(module)
                response = self._response(None, result, entries, request.options, traced)
                return self._with_spans(response, traced)
            except Exception as exc:
                return self._with_spans(pb2.CallResponse(error=_failure(exc)), traced, exc)

    async def StreamModule(self, request: Any, context: Any) -> Any:
        """``RunModule`` streamed: field chunks while the LM writes, then the whole result. The
        call is cancelled with its stream."""
        if context is not None:
            # The stream is open at once, not with its first piece.
            await context.send_initial_metadata(())
        try:
            module = self._module(request)
            lm = self._lm_for(module, request.options, None)
            inputs = map_from_proto(pb2, request.inputs)
        except Exception as exc:
            yield pb2.StreamEvent(done=pb2.CallResponse(error=_failure(exc)))
            return
        with self._traced(request.options, module, lm) as traced:
            stream = self.dspy.stream(module, inputs, lm)
            try:
                async for event in stream:
                    if event[0] == "chunk":
                        _, predictor, field, text, last = event
                        yield pb2.StreamEvent(
                            chunk=pb2.FieldChunk(predictor=predictor, field=field, text=text, last=last)
                        )
                    elif event[0] == "status":
                        yield pb2.StreamEvent(status=event[1])
                    else:
                        _, result, entries = event
                        response = self._response(None, result, entries, request.options, traced)
                        yield pb2.StreamEvent(done=self._with_spans(response, traced))
            except Exception as exc:
                failed = pb2.CallResponse(error=_failure(exc))
                yield pb2.StreamEvent(done=self._with_spans(failed, traced, exc))
            finally:
                await stream.aclose()
                forget_history(module)

    async def RunModule(self, request: Any, context: Any) -> Any:
        try:
            module = self._module(request)
            lm = self._lm_for(module, request.options, None)
        except Exception as exc:
            return pb2.CallResponse(error=_failure(exc))
        return await self._run_module(module, lm, request)
