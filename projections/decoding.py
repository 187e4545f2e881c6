"""Decoding the notification log's rows for read models: only what is used, fast.

The application's mapper decodes with a pure-Python JSON object hook, most of the cost of
reading events. This decoder decodes with orjson and revives the transcoded values
(datetimes, dates, UUIDs) with the application's own transcodings: the same event objects,
several times faster (tests/test_rebuild.py checks equality against the mapper), except
that personal data sealed by jiuzhu.privacy stays sealed: no read model may read it, and
so the read models' processes need no data keys. Events no read model handles are not
decoded at all. Rebuilds (rows scanned from the log) and the projector (rows carried by
relief.events messages) share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import singledispatchmethod
from inspect import getattr_static
from typing import Any, ClassVar, get_origin, get_type_hints
from uuid import UUID

import orjson
from eventsourcing.persistence import DatetimeAsISO, JSONTranscoder, Mapper, StoredEvent
from eventsourcing.utils import resolve_topic

from projections.base import Columns, LogBatch, ReadModel

__all__ = ["SKIPPED", "EventDecoder", "LogRow", "handled_events"]

# A row of the notification log: notification id, originator id, version, topic, state.
LogRow = tuple[int, UUID, int, str, bytes]

# Stands for events no read model handles: process_event ignores it (the default method).
SKIPPED: Any = object()


def handled_events(model: type[ReadModel]) -> frozenset[type] | None:
    """The event classes a read model handles, or None when it cannot be told (all)."""
    declared: Callable[[], frozenset[type]] | None = getattr(model, "handled_events", None)
    if declared is not None:
        return declared()
    method = getattr_static(model, "process_event", None)
    if isinstance(method, singledispatchmethod):
        return frozenset(t for t in method.dispatcher.registry if t is not object)
    return None


# Mappers whose decoding differs from the library's only in unsealing `personal` values
# (jiuzhu.privacy): read models never read personal data, so it stays sealed here.
_PERSONAL_ONLY_MAPPERS = frozenset({"jiuzhu.privacy.mapper:PersonalDataMapper"})


def _decodes_like_the_library(mapper: type[Mapper[Any]]) -> bool:
    topic = f"{mapper.__module__}:{mapper.__qualname__}"
    return mapper.to_domain_event is Mapper.to_domain_event or topic in _PERSONAL_ONLY_MAPPERS


# Distinct business times and dates kept parsed at once (they recur across a cohort).
_DATES_CACHED = 4096
_UNKNOWN: Any = object()

# Set from the notification itself, never from the stored state.
_SET = frozenset({"originator_id", "originator_version"})


@dataclass(frozen=True)
class _Plan:
    """Which fields of an event class hold transcoded values, from its annotations."""

    cls: type
    versioned: bool
    plain: frozenset[str]  # every declared field
    scalars: tuple[str, ...]  # datetime, date, UUID: stored as {"_type_", "_data_"}
    containers: tuple[str, ...]  # dicts, lists, anything else: revived recursively
    repeated: frozenset[str]  # scalars whose values recur (all but the recording time)

    @classmethod
    def of(cls, event_class: type) -> _Plan:
        versioned = getattr(event_class, "class_version", 1) != 1
        try:
            hints = get_type_hints(event_class)
        except Exception:  # unresolvable annotations: look at every value instead
            return cls(event_class, versioned, frozenset(), (), (), frozenset())
        scalars: list[str] = []
        containers: list[str] = []
        for name, hint in hints.items():
            if hint in (str, int, bool, float) or get_origin(hint) is ClassVar or name in _SET:
                continue
            (scalars if hint in (datetime, date, UUID) else containers).append(name)
        repeated = frozenset(scalars) - {"timestamp"}
        return cls(
            event_class, versioned, frozenset(hints), tuple(scalars), tuple(containers), repeated
        )


class EventDecoder:
    """Rows of the notification log into (domain event, notification id), wanted topics only."""

    def __init__(self, mapper: Mapper[Any], models: Iterable[type[ReadModel]]) -> None:
        self.mapper = mapper
        wanted: set[type] = set()
        self.everything = False
        for model in models:
            handled = handled_events(model)
            if handled is None:
                self.everything = True
            else:
                wanted |= handled
        self.wanted = tuple(wanted)
        self._topics: dict[str, type | None] = {}
        transcoder = mapper.transcoder
        self.fast = (
            _decodes_like_the_library(type(mapper))
            and mapper.cipher is None
            and mapper.compressor is None
            and type(transcoder) is JSONTranscoder
        )
        self._transcodings = transcoder.names if isinstance(transcoder, JSONTranscoder) else {}
        # The library's datetime transcoding is datetime.fromisoformat behind an assert.
        self._scalars: dict[str, Callable[[Any], Any]] = {
            name: datetime.fromisoformat if type(t) is DatetimeAsISO else t.decode
            for name, t in self._transcodings.items()
        }
        self._plans: dict[type, _Plan] = {}
        self._topic_plans: dict[str, _Plan | None] = {}
        self._dates: dict[str, Any] = {}

    def event_class(self, topic: str) -> type | None:
        """The class of a topic if some read model handles it, else None."""
        try:
            return self._topics[topic]
        except KeyError:
            cls = resolve_topic(topic)
            wanted = self.everything or issubclass(cls, self.wanted)
            self._topics[topic] = cls if wanted else None
            return self._topics[topic]

    def decode(self, rows: Sequence[LogRow]) -> LogBatch:
        """A batch of rows (notification ids strictly increasing): the events read models use.

        A batch that ends with events no read model handles carries the last position.
        """
        if not self.fast:
            return self._decode_each(rows, self._decode_mapper)
        # The common path of _decode_fast, inlined: a rebuild runs it a million times.
        batch = LogBatch()
        append = batch.append
        # Noted while each event is fresh in the cache (LogBatch.columns says why).
        columns = Columns([], [], [], [])
        note_event, note_kind = columns.events.append, columns.kinds.append
        note_case, note_key = columns.case_ids.append, columns.case_keys.append
        plans = self._topic_plans
        loads, new, set_dict = orjson.loads, object.__new__, object.__setattr__
        scalars, revive, dates = self._scalars, self._revive, self._dates
        for notification_id, originator_id, version, topic, state in rows:
            plan = plans.get(topic, _UNKNOWN)
            if plan is _UNKNOWN:
                plan = self._plan_of_topic(topic)
            if plan is None:
                continue
            values: dict[str, Any] = loads(state) if not plan.versioned else {}
            if plan.versioned or not plan.plain.issuperset(values):
                event = self._decode_fast(plan.cls, originator_id, version, topic, state)
                append((event, notification_id))
                note_event(event)
                note_kind(event.__class__)
                note_case(originator_id)
                note_key(originator_id.int)
                continue
            for key in plan.scalars:  # datetime, date, UUID fields: one transcoded value
                value = values.get(key)
                if value.__class__ is dict:
                    data = value["_data_"]
                    if data.__class__ is not str:
                        values[key] = revive(value)
                    elif key in plan.repeated:
                        # Business times and dates repeat across a cohort: parse each once.
                        parsed = dates.get(data)
                        if parsed is None:
                            if len(dates) >= _DATES_CACHED:
                                dates.clear()
                            parsed = dates[data] = scalars[value["_type_"]](data)
                        values[key] = parsed
                    else:
                        values[key] = scalars[value["_type_"]](data)
            for key in plan.containers:
                value = values.get(key)
                if value.__class__ is dict or value.__class__ is list:
                    values[key] = revive(value)
            values["originator_id"] = originator_id
            values["originator_version"] = version
            event = new(plan.cls)
            set_dict(event, "__dict__", values)
            append((event, notification_id))
            note_event(event)
            note_kind(plan.cls)
            note_case(originator_id)
            note_key(originator_id.int)
        last = rows[-1][0]
        if not batch or batch[-1][1] != last:
            batch.append((SKIPPED, last))
            note_event(SKIPPED)
            note_kind(object)
            note_case(None)
            note_key(0)
        batch.set_columns(columns)
        return batch

    def _decode_each(self, rows: Sequence[LogRow], decode: Callable[..., Any]) -> LogBatch:
        batch = LogBatch()
        event_class = self.event_class
        for notification_id, originator_id, version, topic, state in rows:
            cls = event_class(topic)
            if cls is not None:
                batch.append((decode(cls, originator_id, version, topic, state), notification_id))
        last = rows[-1][0]
        if not batch or batch[-1][1] != last:
            batch.append((SKIPPED, last))
        return batch

    def _plan_of_topic(self, topic: str) -> _Plan | None:
        cls = self.event_class(topic)
        plan = None if cls is None else self._plan(cls)
        self._topic_plans[topic] = plan
        return plan

    def _plan(self, cls: type) -> _Plan:
        plan = self._plans.get(cls)
        if plan is None:
            plan = self._plans[cls] = _Plan.of(cls)
        return plan

    def _decode_mapper(
        self, cls: type, originator_id: UUID, version: int, topic: str, state: bytes
    ) -> Any:
        return self.mapper.to_domain_event(
            StoredEvent(
                originator_id=originator_id,
                originator_version=version,
                topic=topic,
                state=bytes(state),
            )
        )

    def _decode_fast(
        self, cls: type, originator_id: UUID, version: int, topic: str, state: bytes
    ) -> Any:
        plan = self._plan(cls)
        if plan.versioned:
            # Upcasting is the mapper's business: leave versioned events to it.
            return self._decode_mapper(cls, originator_id, version, topic, state)
        values: dict[str, Any] = orjson.loads(state)
        if plan.plain.issuperset(values):  # str, int, bool fields left as they are
            scalars = self._scalars
            for key in plan.scalars:  # datetime, date, UUID fields: one transcoded value
                value = values.get(key)
                if type(value) is dict:
                    data = value["_data_"]
                    values[key] = (
                        scalars[value["_type_"]](data) if type(data) is str else self._revive(value)
                    )
            for key in plan.containers:
                value = values.get(key)
                if type(value) is dict or type(value) is list:
                    values[key] = self._revive(value)
        else:  # fields the class does not declare: look at every value
            for key, value in values.items():
                if type(value) is dict or type(value) is list:
                    values[key] = self._revive(value)
            if "class_version" in values:
                return self._decode_mapper(cls, originator_id, version, topic, state)
        values["originator_id"] = originator_id
        values["originator_version"] = version
        event: Any = object.__new__(cls)
        object.__setattr__(event, "__dict__", values)
        return event

    def _revive(self, value: Any) -> Any:
        """Undo the transcoder's {"_type_", "_data_"} wrapping, innermost first like it does."""
        if type(value) is list:
            return [self._revive(v) if type(v) is dict or type(v) is list else v for v in value]
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            data = value["_data_"]
            if type(data) is dict or type(data) is list:
                data = self._revive(data)
            return self._transcodings[value["_type_"]].decode(data)
        return {
            k: self._revive(v) if type(v) is dict or type(v) is list else v
            for k, v in value.items()
        }
