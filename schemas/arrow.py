"""Derive Arrow schemas from pydantic models, so a Parquet file and its model cannot drift.

>>> from pydantic import BaseModel
>>> class Row(BaseModel):
...     utterance_id: str
...     duration_s: float | None = None
...     subsets: list[str] = []
>>> arrow_schema(Row).names
['utterance_id', 'duration_s', 'subsets']
"""

from __future__ import annotations

import datetime as dt
import enum
import types
import typing

import pyarrow as pa
from pydantic import BaseModel

_SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    bytes: pa.binary(),
    dt.datetime: pa.timestamp("us", tz="UTC"),
}


def _arrow_type(annotation: object) -> tuple[pa.DataType, bool]:
    """Return the Arrow type of a field annotation and whether it is nullable."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unions other than `X | None` have no Arrow type: {annotation}")
        arrow_type, _ = _arrow_type(args[0])
        return arrow_type, True
    if origin is typing.Literal:
        return pa.string(), False
    if origin in (list, tuple):
        (item,) = typing.get_args(annotation)[:1]
        item_type, _ = _arrow_type(item)
        return pa.list_(item_type), False
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return pa.string(), False
    if isinstance(annotation, type) and annotation in _SCALARS:
        return _SCALARS[annotation], False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(
            [pa.field(n, *_arrow_type(f.annotation)) for n, f in annotation.model_fields.items()]
        ), False
    raise TypeError(f"no Arrow type for annotation {annotation!r}")


def arrow_schema(
    model: type[BaseModel], narrower: dict[str, pa.DataType] | None = None
) -> pa.Schema:
    """The Arrow schema of a pydantic model: one field per model field, in order.

    `narrower` replaces the derived type of named fields with a narrower one
    (e.g. `list<uint16>` for speech codes that pydantic sees as `list[int]`);
    the field names and their order still come from the model.
    """
    narrower = narrower or {}
    unknown = set(narrower) - set(model.model_fields)
    if unknown:
        raise KeyError(f"{model.__name__} has no fields {sorted(unknown)}")
    fields = []
    for name, field in model.model_fields.items():
        arrow_type, nullable = _arrow_type(field.annotation)
        fields.append(pa.field(name, narrower.get(name, arrow_type), nullable=nullable))
    return pa.schema(fields)
