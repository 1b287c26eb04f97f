"""Events of the vision system, delivered to subscribers of the vision system and of the Server.

OPC 10000-3 makes the Server object the root of the event notifier hierarchy: a generic
client (UaExpert's event view, most MES connectors) subscribes there and expects every
event of the server. The Server object gets a HasNotifier reference to the vision system,
and each event is delivered, with one EventId, to the monitored items of both.
"""

from __future__ import annotations

from typing import Any

from asyncua import Node, Server, ua
from asyncua.server.event_generator import EventGenerator


class VisionEvents:
    def __init__(self, server: Server, system: Node) -> None:
        self.server = server
        self.system = system
        self._generators: dict[ua.NodeId, EventGenerator] = {}
        self._names: dict[ua.NodeId, str] = {}  # browse names of event sources, read once

    async def start(self) -> None:
        await self.server.nodes.server.add_reference(self.system.nodeid, ua.ObjectIds.HasNotifier)

    async def _generator(self, event_type: ua.NodeId) -> EventGenerator:
        if event_type not in self._generators:
            gen = await self.server.get_event_generator(event_type, self.system.nodeid)
            # asyncua types the Id of a transition's states as Variant; they are NodeIds.
            for name in ("Transition/Id", "FromState/Id", "ToState/Id"):
                if name in gen.event.data_types:
                    gen.event.data_types[name] = ua.VariantType.NodeId
            self._generators[event_type] = gen
        return self._generators[event_type]

    async def fire(
        self, event_type: ua.NodeId, fields: dict[str, Any], message: str, source: Node | None = None
    ) -> None:
        gen = await self._generator(event_type)
        event = gen.event
        for name, value in fields.items():
            setattr(event, name, value)
        source = source or self.system
        if source.nodeid not in self._names:
            self._names[source.nodeid] = (await source.read_browse_name()).Name
        event.SourceNode = source.nodeid
        event.SourceName = self._names[source.nodeid]
        await gen.trigger(message=message)  # to the vision system's subscribers, with a new EventId
        event.emitting_node = self.server.nodes.server.nodeid
        try:
            await gen.isession.subscription_service.trigger_event(event)  # the same event, to the Server's
        finally:
            event.emitting_node = self.system.nodeid
