"""The vision system's two state machines as a client sees them (OPC 40100-1 8.3, 8.4).

``VisionStateMachine`` (Preoperational, Halted, Error, Operational) and inside it
``AutomaticModeStateMachine`` (Initialized, Ready, SingleExecution, ContinuousExecution).
This module keeps what the address space says in step with the states the server decides:
``CurrentState`` with its ``Id`` and ``Number``; the automatic mode's variables with status
Bad_StateNotActive while the vision system is not Operational (OPC 10000-16 says a
sub-state machine that is not active reports so); a ``StateChangedEventType`` event (a
TransitionEventType) per change, naming the transition of the type; and each method's
Executable attribute, true only in the states that allow the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from asyncua import Node, ua

from huoyan.io.opcua import nodeids as ids
from huoyan.io.opcua.events import VisionEvents
from huoyan.io.opcua.types import MachineVisionTypes

log = logging.getLogger(__name__)

V = ua.VariantType
TOP = "top"
AUTO = "auto"


class StateMachines:
    def __init__(
        self,
        t: MachineVisionTypes,
        top: Node,
        auto: Node,
        events: VisionEvents,
        methods: dict[str, Node],
        allowed: Callable[[str], bool],
    ) -> None:
        self.t = t
        self.nodes = {TOP: top, AUTO: auto}
        self.events = events
        self.methods = methods
        self.allowed = allowed  # whether a method may be called in the current states
        self.top = "Preoperational"
        self.auto = "Initialized"
        self._variables: dict[str, tuple[Node, Node, Node]] = {}
        self._executable: dict[str, bool] = {}  # as last written, so a change writes only what changed

    async def start(self) -> None:
        """Find (or add: Number is optional) the CurrentState variables and write the initial states."""
        for machine, node in self.nodes.items():
            current = await node.get_child(ua.QualifiedName("CurrentState", 0))
            state_id = await current.get_child(ua.QualifiedName("Id", 0))
            try:
                number = await current.get_child(ua.QualifiedName("Number", 0))
            except ua.UaError:
                number = await current.add_property(
                    ids.node_id(str(current.nodeid.Identifier) + ".Number", current.nodeid.NamespaceIndex),
                    ua.QualifiedName("Number", 0),
                    ua.Variant(0, V.UInt32),
                )
            self._variables[machine] = (current, state_id, number)
        await self._write()

    async def move(self, machine: str, to: str, cause: str | None = None) -> None:
        """Enter state ``to``: the transition is the one ``cause`` (a method) causes, else the automatic one."""
        before = self.top if machine == TOP else self.auto
        if before == to:
            return
        table = ids.TOP_TRANSITIONS if machine == TOP else ids.AUTO_TRANSITIONS
        name, transition = _transition(table, before, to, cause)
        log.info("opcua: %s -> %s (%s)", before, to, name)
        if machine == TOP:
            self.top = to
        else:
            self.auto = to
        await self._write()
        states = ids.TOP_STATES if machine == TOP else ids.AUTO_STATES
        n = self.t.nid
        await self.events.fire(
            n(ids.STATE_CHANGED_EVENT_TYPE),
            {
                "Transition": ua.LocalizedText(name),
                "Transition/Id": n(transition.node),
                "FromState": ua.LocalizedText(before),
                "FromState/Id": n(states[before][0]),
                "ToState": ua.LocalizedText(to),
                "ToState/Id": n(states[to][0]),
            },
            message=f"{before} -> {to}",
            source=self.nodes[machine],
        )

    async def _write(self) -> None:
        await self._write_machine(TOP, self.top, ids.TOP_STATES, active=True)
        await self._write_machine(AUTO, self.auto, ids.AUTO_STATES, active=self.top == "Operational")
        for name, method in self.methods.items():
            allowed = self.allowed(name)
            if self._executable.get(name) == allowed:
                continue
            self._executable[name] = allowed
            executable = ua.DataValue(ua.Variant(allowed, V.Boolean))
            await method.write_attribute(ua.AttributeIds.Executable, executable)
            await method.write_attribute(ua.AttributeIds.UserExecutable, executable)

    async def _write_machine(
        self, machine: str, state: str, table: dict[str, tuple[int, int, int]], active: bool
    ) -> None:
        current, state_id, number = self._variables[machine]
        node_number, _, state_number = table[state]
        status = ua.StatusCode(ua.StatusCodes.Good if active else ua.StatusCodes.BadStateNotActive)  # type: ignore[arg-type]
        for node, value in (
            (current, ua.Variant(ua.LocalizedText(state), V.LocalizedText)),
            (state_id, ua.Variant(self.t.nid(node_number), V.NodeId)),
            (number, ua.Variant(state_number, V.UInt32)),
        ):
            await node.write_value(ua.DataValue(value, StatusCode=status))


def _transition(
    table: dict[str, ids.Transition], before: str, to: str, cause: str | None
) -> tuple[str, ids.Transition]:
    candidates = [(k, t) for k, t in table.items() if t.from_state == before and t.to_state == to]
    for name, transition in candidates:
        if transition.cause == cause:
            return name, transition
    for name, transition in candidates:
        if transition.cause is None:
            return name, transition
    raise ValueError(f"no transition from {before} to {to}")
