"""The mapping of field types: Rust → wire → Python. ``bridge/src/api/dspy/field_types.rs`` is the
other half, with the same table.

| Rust (a ``dspex`` field)                    | wire (``TypeRef``)                             | Python          |
|---------------------------------------------|------------------------------------------------|-----------------|
| ``String``                                  | ``scalar: STRING``                             | ``str``         |
| ``i8``–``i64``, ``isize``, ``u8``–``u32``   | ``scalar: INT``                                | ``int``         |
| ``f32``, ``f64``                            | ``scalar: FLOAT``                              | ``float``       |
| ``bool``                                    | ``scalar: BOOL``                               | ``bool``        |
| (untyped: ReAct's tool arguments)           | ``scalar: ANY``                                | ``typing.Any``  |
| ``Vec<T>``                                  | ``list: T``                                    | ``list[T]``     |
| ``HashMap<String, T>``, ``BTreeMap<..>``    | ``map: T``                                     | ``dict[str, T]``|
| ``Option<T>``                               | ``optional: T``                                | ``Optional[T]`` |
| a ``#[dspy_type]`` enum without data        | ``literal: [...]``                             | ``Literal[...]``|
| a ``#[dspy_type]`` struct                   | ``object: name`` + an ``ObjectDef`` per signature | a pydantic model (fields that are ``Optional`` default to ``None``) |
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from snakepit_bridge.errors import InvalidArgument

_SCALARS = {0: str, 1: int, 2: float, 3: bool, 4: Any}


class TypeBuilder:
    """Turns the ``TypeRef``s of one signature into Python annotations, building each of its
    object types (a pydantic model) once."""

    def __init__(self, objects: Any) -> None:
        self._definitions = {o.name: o for o in objects}
        if len(self._definitions) != len(objects):
            raise InvalidArgument("a signature defines an object type twice")
        self._models: dict[str, Any] = {}
        self._building: set[str] = set()

    def annotation(self, type_ref: Any) -> Any:
        """The Python annotation of a ``TypeRef`` (an unset one is ``str``)."""
        kind = type_ref.WhichOneof("kind")
        if kind is None:
            return str
        if kind == "scalar":
            try:
                return _SCALARS[type_ref.scalar]
            except KeyError:
                raise InvalidArgument(f"unknown scalar type {type_ref.scalar}") from None
        if kind == "list":
            return list[self.annotation(type_ref.list)]  # type: ignore[misc]
        if kind == "map":
            return dict[str, self.annotation(type_ref.map)]  # type: ignore[misc]
        if kind == "optional":
            return Optional[self.annotation(type_ref.optional)]  # noqa: UP045
        if kind == "literal":
            values = tuple(type_ref.literal.values)
            if not values:
                raise InvalidArgument("a Literal needs at least one value")
            return Literal[values]  # type: ignore[valid-type]
        if kind == "object":
            return self._model(type_ref.object)
        raise InvalidArgument(f"unsupported field type {kind!r}")

    def _model(self, name: str) -> Any:
        import pydantic

        model = self._models.get(name)
        if model is not None:
            return model
        definition = self._definitions.get(name)
        if definition is None:
            raise InvalidArgument(f"object type {name!r} is not defined by the signature")
        if name in self._building:
            raise InvalidArgument(f"object type {name!r} contains itself")
        self._building.add(name)
        fields: dict[str, Any] = {}
        for field in definition.fields:
            annotation = self.annotation(field.type)
            optional = field.type.WhichOneof("kind") == "optional"
            fields[field.name] = (
                annotation,
                pydantic.Field(None if optional else ..., description=field.description or None),
            )
        self._building.discard(name)
        model = pydantic.create_model(name, **fields)
        self._models[name] = model
        return model
