"""OPC 40100-1 conformance of the Machine Vision server: its type model against the official
NodeSet (``Opc.Ua.MachineVision.NodeSet2.xml`` of the npm package ``node-opcua-nodesets``,
installed by ``npm ci`` in tests/opcua_peer), and its state machines walked the way a PLC
walks them, with the transition events a subscriber of the Server object receives."""

from __future__ import annotations

import asyncio
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, Node, ua

from huoyan.core.records import Severity, StationEvent
from huoyan.io.opcua import nodeids as ids
from huoyan.runner import open_station
from linepeers import free_port, station_thread, until
from test_opcua import PEER, browse, opcua_recipe, start_args, state
from test_station import load, write_recipe

NODESET = PEER / "node_modules" / "node-opcua-nodesets" / "nodesets" / "Opc.Ua.MachineVision.NodeSet2.xml"
UA = "{http://opcfoundation.org/UA/2011/03/UANodeSet.xsd}"
TYPES = "{http://opcfoundation.org/UA/2008/02/Types.xsd}"
RULES = {"i=78": "Mandatory", "i=80": "Optional", "i=11508": "OptionalPlaceholder", "i=11510": "MandatoryPlaceholder"}
HIERARCHICAL = {"i=46": "HasProperty", "i=47": "HasComponent"}
# The types a station instantiates, and the browse path of the instance from the vision system.
INSTANTIATED = {
    ids.VISION_SYSTEM_TYPE: (),
    ids.VISION_STATE_MACHINE_TYPE: ("VisionStateMachine",),
    ids.VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE: ("VisionStateMachine", "AutomaticModeStateMachine"),
    ids.RECIPE_MANAGEMENT_TYPE: ("RecipeManagement",),
    ids.RESULT_MANAGEMENT_TYPE: ("ResultManagement",),
    ids.RESULT_FOLDER_TYPE: ("ResultManagement", "Results"),
    ids.RESULT_TYPE: ("ResultManagement", "Results", "LastResult"),
}
EVENT_TYPES = (
    ids.RESULT_READY_EVENT_TYPE,
    ids.STATE_CHANGED_EVENT_TYPE,
    ids.JOB_STARTED_EVENT_TYPE,
    ids.READY_EVENT_TYPE,
    ids.RECIPE_PREPARED_EVENT_TYPE,
    ids.ERROR_EVENT_TYPE,
    ids.ERROR_RESOLVED_EVENT_TYPE,
)
DATA_TYPES = (
    ids.TRIMMED_STRING,
    ids.HANDLE,
    ids.RESULT_STATE,
    ids.TRI_STATE_BOOLEAN,
    ids.BINARY_ID_BASE,
    ids.RECIPE_ID_EXTERNAL,
    ids.RECIPE_ID_INTERNAL,
    ids.CONFIGURATION_ID,
    ids.MEAS_ID,
    ids.PART_ID,
    ids.PRODUCT_ID,
    ids.JOB_ID,
    ids.RESULT_ID,
    ids.PROCESSING_TIMES,
    ids.RESULT_DATA,
)


@dataclass
class Child:
    node_id: str
    name: str
    node_class: str
    reference: str
    rule: str | None
    type_definition: str | None
    data_type: str | None
    value_rank: int


@dataclass
class NodeSet:
    """The official NodeSet, read with the standard library: NodeIds as written there (ns=1 is Machine Vision)."""

    nodes: dict[str, ET.Element]
    aliases: dict[str, str]
    model: ET.Element
    children_cache: dict[str, list[Child]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> NodeSet:
        root = ET.parse(path).getroot()
        aliases = {a.get("Alias", ""): a.text or "" for a in root.find(f"{UA}Aliases") or []}
        nodes = {n.get("NodeId", ""): n for n in root if n.get("NodeId")}
        model = root.find(f"{UA}Models/{UA}Model")
        assert model is not None
        return cls(nodes, aliases, model)

    def resolve(self, ref: str | None) -> str | None:
        return None if ref is None else self.aliases.get(ref, ref)

    def refs(self, node_id: str) -> list[tuple[str, bool, str]]:
        out = []
        for r in self.nodes[node_id].find(f"{UA}References") or []:
            out.append(
                (self.resolve(r.get("ReferenceType")) or "", r.get("IsForward", "true") != "false", r.text or "")
            )
        return [(t, fwd, self.resolve(target) or "") for t, fwd, target in out]

    def targets(self, node_id: str, ref_type: str, forward: bool = True) -> list[str]:
        return [t for r, f, t in self.refs(node_id) if r == ref_type and f == forward]

    def supertypes(self, node_id: str) -> list[str]:
        """HasSubtype is written on either side in the NodeSet: inverse on the subtype, or forward on the base."""
        found = self.targets(node_id, "i=45", forward=False)
        found += [n for n in self.nodes if node_id in self.targets(n, "i=45")]
        return found

    def name(self, node_id: str) -> str:
        return self.nodes[node_id].get("BrowseName", "").split(":", 1)[-1]

    def children(self, node_id: str) -> list[Child]:
        if node_id not in self.children_cache:
            out = []
            for ref, fwd, target in self.refs(node_id):
                if fwd and ref in HIERARCHICAL and target in self.nodes:
                    el = self.nodes[target]
                    rules = self.targets(target, "i=37")
                    typedefs = self.targets(target, "i=40")
                    out.append(
                        Child(
                            target,
                            self.name(target),
                            el.tag.removeprefix(UA).removeprefix("UA"),
                            HIERARCHICAL[ref],
                            RULES.get(rules[0]) if rules else None,
                            typedefs[0] if typedefs else None,
                            self.resolve(el.get("DataType", "i=24")) if el.tag == f"{UA}UAVariable" else None,
                            int(el.get("ValueRank", "-1")),
                        )
                    )
            self.children_cache[node_id] = out
        return self.children_cache[node_id]

    def value_of(self, node_id: str, tag: str) -> str:
        found = self.nodes[node_id].find(f".//{TYPES}{tag}")
        assert found is not None and found.text is not None
        return found.text

    def arguments(self, method: str, which: str) -> list[tuple[str, str, int]]:
        for child in self.children(method):
            if child.name == which:
                return [
                    (
                        a.findtext(f"{TYPES}Name") or "",
                        a.findtext(f"{TYPES}DataType/{TYPES}Identifier") or "",
                        int(a.findtext(f"{TYPES}ValueRank") or "-1"),
                    )
                    for a in self.nodes[child.node_id].iter(f"{TYPES}Argument")
                ]
        return []

    def fields(self, data_type: str) -> list[tuple[str, str | None, bool, int]]:
        """A structure's fields, its bases' first (the NodeSet lists only a subtype's own)."""
        supertype = self.supertypes(data_type)
        inherited = self.fields(supertype[0]) if supertype and supertype[0] in self.nodes else []
        definition = self.nodes[data_type].find(f"{UA}Definition")
        own = [
            (
                f.get("Name", ""),
                self.resolve(f.get("DataType", "i=24")),
                f.get("IsOptional") == "true",
                int(f.get("ValueRank", "-1")),
            )
            for f in (definition if definition is not None else [])
            if f.get("Value") is None
        ]
        return inherited + own


@pytest.fixture(scope="module")
def nodeset() -> NodeSet:
    if not NODESET.is_file():
        if os.environ.get("CI"):
            pytest.fail("the MachineVision NodeSet is missing; .ci/run runs npm ci in tests/opcua_peer")
        pytest.skip("run `npm ci --prefix tests/opcua_peer` first")
    return NodeSet.load(NODESET)


class Server:
    """Reads the running server the way the NodeSet is written: ns=1 means Machine Vision."""

    def __init__(self, client: Client, mv: int) -> None:
        self.client = client
        self.mv = mv

    def node_id(self, text: str) -> ua.NodeId:
        if text.startswith("ns=1;"):
            return ua.NodeId.from_string(f"ns={self.mv};" + text.split(";", 1)[1])
        return ua.NodeId.from_string(text)

    def text(self, node_id: ua.NodeId) -> str:
        s = node_id.to_string()
        return s.replace(f"ns={self.mv};", "ns=1;") if node_id.NamespaceIndex == self.mv else s

    async def rule(self, node: Node) -> str | None:
        rules = await node.get_referenced_nodes(ua.ObjectIds.HasModellingRule)
        return RULES.get(rules[0].nodeid.to_string()) if rules else None

    async def describe(self, node: Node, reference: str) -> Child:
        node_class = (await node.read_node_class()).name
        typedef = await node.read_type_definition() if node_class in ("Object", "Variable") else None
        data_type = value_rank = None
        if node_class == "Variable":
            data_type = self.text(await node.read_data_type())
            value_rank = await node.read_value_rank()
        return Child(
            self.text(node.nodeid),
            (await node.read_browse_name()).Name,
            node_class,
            reference,
            await self.rule(node),
            self.text(typedef) if typedef is not None else None,
            data_type,
            value_rank if value_rank is not None else -1,
        )

    async def children(self, node: Node) -> dict[str, Child]:
        out = {}
        for ref, name in ((ua.ObjectIds.HasComponent, "HasComponent"), (ua.ObjectIds.HasProperty, "HasProperty")):
            for child in await node.get_children(refs=ref):
                described = await self.describe(child, name)
                out[described.name] = described
        return out


async def conformance(port: int, ns: NodeSet) -> list[str]:
    """Every difference from the NodeSet, as a readable line (an empty list conforms)."""
    problems: list[str] = []
    async with Client(f"opc.tcp://127.0.0.1:{port}/huoyan/") as client:
        mv = await client.get_namespace_index(ids.NAMESPACE_URI)
        srv = Server(client, mv)

        def check(what: str, ours: Any, theirs: Any) -> None:
            if ours != theirs:
                problems.append(f"{what}: server has {ours!r}, NodeSet has {theirs!r}")

        async def type_on_server(number: int) -> tuple[str, Node, str]:
            """A type of the NodeSet on the server: its NodeId there, browse name and supertype checked."""
            nid = f"ns=1;i={number}"
            node = client.get_node(srv.node_id(nid))
            name = ns.name(nid)
            check(f"{name} BrowseName", (await node.read_browse_name()).Name, name)
            supertypes = await node.get_referenced_nodes(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
            check(f"{name} supertype", [srv.text(s.nodeid) for s in supertypes], ns.supertypes(nid))
            return nid, node, name

        for number in (*INSTANTIATED, *EVENT_TYPES):
            nid, node, name = await type_on_server(number)
            ours = await srv.children(node)
            theirs = {c.name: c for c in ns.children(nid)}
            for c in theirs.values():
                if c.rule == "Mandatory":
                    mine = ours.get(c.name)
                    if mine is None:
                        problems.append(f"{name}: mandatory {c.name} missing")
                        continue
                    for attr in ("node_id", "node_class", "reference", "rule", "type_definition", "data_type"):
                        check(f"{name}/{c.name} {attr}", getattr(mine, attr), getattr(c, attr))
            for mine in ours.values():
                if mine.rule is not None:  # what we declare must be declared so in the NodeSet
                    c = theirs.get(mine.name)
                    if c is None:
                        problems.append(f"{name}: {mine.name} is not in the NodeSet")
                        continue
                    for attr in ("node_id", "node_class", "reference", "rule", "type_definition", "data_type"):
                        check(f"{name}/{mine.name} {attr}", getattr(mine, attr), getattr(c, attr))
                    if mine.node_class == "Variable":
                        check(f"{name}/{mine.name} ValueRank", mine.value_rank, c.value_rank)
                    if mine.node_class == "Method":
                        method = client.get_node(srv.node_id(c.node_id))
                        for which in ("InputArguments", "OutputArguments"):
                            declared = []
                            try:
                                prop = await method.get_child(ua.QualifiedName(which, 0))
                                declared = [
                                    (a.Name, srv.text(a.DataType), a.ValueRank) for a in await prop.read_value()
                                ]
                            except ua.UaError:
                                pass
                            expected = [(n, ns.resolve(d), r) for n, d, r in ns.arguments(c.node_id, which)]
                            check(f"{name}/{mine.name} {which}", declared, expected)
            # States and transitions of the state machine types: NodeIds, numbers, references.
            for c in theirs.values():
                if c.type_definition in ("i=2307", "i=2310"):
                    mine = ours.get(c.name)
                    if mine is None:
                        problems.append(f"{name}: {c.name} missing")
                        continue
                    check(f"{name}/{c.name} node_id", mine.node_id, c.node_id)
                    number_name = "StateNumber" if c.type_definition == "i=2307" else "TransitionNumber"
                    target = client.get_node(srv.node_id(c.node_id))
                    number = await (await target.get_child(ua.QualifiedName(number_name, 0))).read_value()
                    number_id = next(x.node_id for x in ns.children(c.node_id) if x.name == number_name)
                    check(f"{name}/{c.name} {number_name}", number, int(ns.value_of(number_id, "UInt32")))
                    for ref_name, ref in (("FromState", ua.ObjectIds.FromState), ("ToState", ua.ObjectIds.ToState)):
                        if c.type_definition == "i=2310":
                            got = [srv.text(n.nodeid) for n in await target.get_referenced_nodes(ref)]
                            check(f"{name}/{c.name} {ref_name}", got, ns.targets(c.node_id, f"i={int(ref)}"))

            if number in INSTANTIATED:  # the instance has every mandatory child, typed as declared
                system = await browse(client, "st-1")
                instance = (
                    await system.get_child([f"{mv}:{p}" for p in INSTANTIATED[number]])
                    if INSTANTIATED[number]
                    else system
                )
                check(f"{name} instance type", srv.text(await instance.read_type_definition()), nid)
                present = await srv.children(instance)
                for c in theirs.values():
                    if c.rule == "Mandatory":
                        mine = present.get(c.name)
                        if mine is None:
                            problems.append(f"{name} instance: mandatory {c.name} missing")
                            continue
                        for attr in ("node_class", "type_definition", "data_type"):
                            check(f"{name} instance/{c.name} {attr}", getattr(mine, attr), getattr(c, attr))

        for number in DATA_TYPES:
            nid, node, name = await type_on_server(number)
            definition = ns.nodes[nid].find(f"{UA}Definition")
            if definition is None:
                continue
            ours_def = await node.read_data_type_definition()
            if isinstance(ours_def, ua.EnumDefinition):
                got = [(f.Name, f.Value) for f in ours_def.Fields]
                check(f"{name} enum", got, [(f.get("Name"), int(f.get("Value", "0"))) for f in definition])
            else:
                got_fields = [(f.Name, srv.text(f.DataType), f.IsOptional, f.ValueRank) for f in ours_def.Fields]
                check(f"{name} fields", got_fields, ns.fields(nid))
                check(f"{name} base", srv.text(ours_def.BaseDataType), ns.supertypes(nid)[0])

        # The namespace's metadata, where OPC 10000-5 puts it.
        namespaces = client.get_node(ua.ObjectIds.Server_Namespaces)
        meta = await namespaces.get_child(ua.QualifiedName(ids.NAMESPACE_URI, mv))
        values = {(await p.read_browse_name()).Name: await p.read_value() for p in await meta.get_properties()}
        check("NamespaceUri", values.get("NamespaceUri"), ns.model.get("ModelUri"))
        check("NamespaceVersion", values.get("NamespaceVersion"), ns.model.get("Version"))
        published = values.get("NamespacePublicationDate")
        check(
            "NamespacePublicationDate",
            published.isoformat().replace("+00:00", "Z") if isinstance(published, datetime) else published,
            ns.model.get("PublicationDate"),
        )
        # CurrentState/Number of both machines: a property with a NodeId that says what it is.
        for path in (("VisionStateMachine",), ("VisionStateMachine", "AutomaticModeStateMachine")):
            machine = await browse(client, "st-1", *path)
            number = await (await machine.get_child("0:CurrentState")).get_child("0:Number")
            if "True" in str(number.nodeid.Identifier) or "False" in str(number.nodeid.Identifier):
                problems.append(f"{'/'.join(path)}/CurrentState/Number has NodeId {number.nodeid}")
    return problems


def test_type_model_matches_the_official_nodeset(model_file: Path, tmp_path: Path, nodeset: NodeSet) -> None:
    port = free_port()
    recipe = opcua_recipe(tmp_path, model_file, port, "anonymous: true, security: [none]")
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    with station_thread(opened, port):
        problems = asyncio.run(conformance(port, nodeset))
    assert problems == []


class Transitions:
    """StateChangedEventType events received on the Server object."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def event_notification(self, event: Any) -> None:
        fields = event.get_event_props_as_fields_dict()
        self.seen.append({name: variant.Value for name, variant in fields.items()})


async def executable(node: Node, name: str, mv: int) -> bool:
    method = await node.get_child(f"{mv}:{name}")
    return bool((await method.read_attribute(ua.AttributeIds.Executable)).Value.Value)


def test_state_machine_walk_with_a_transition_event_per_change(model_file: Path, tmp_path: Path) -> None:
    port = free_port()
    broken = tmp_path / "broken"
    broken.mkdir()
    bad_model = broken / "model.safetensors"
    bad_model.write_bytes(b"not a model")
    write_recipe(broken, bad_model, "{type: camera, device: PLACEHOLDER, mode: trigger}")
    (broken / "recipe.yaml").write_text((broken / "recipe.yaml").read_text().replace("washer-top", "washer-broken"))
    table = f"  recipes: [{{index: 2, file: {broken / 'recipe.yaml'}}}]\n"
    recipe = opcua_recipe(tmp_path, model_file, port, "anonymous: true, security: [none]", extra=table)
    text = (broken / "recipe.yaml").read_text()
    (broken / "recipe.yaml").write_text(text.replace("device: PLACEHOLDER", f"device: {tmp_path / 'cam.avi'}"))
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")
    cause = (ua.Variant(0, ua.VariantType.Int32), "plc")

    async def plc(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        async with Client(f"opc.tcp://127.0.0.1:{port}/huoyan/") as client:
            await client.load_data_type_definitions()
            mv = await client.get_namespace_index(ids.NAMESPACE_URI)
            hy = await client.get_namespace_index(ids.HUOYAN_URI)
            system = await browse(client, "st-1")
            top = await browse(client, "st-1", "VisionStateMachine")
            auto = await top.get_child(f"{mv}:AutomaticModeStateMachine")
            recipes = await system.get_child(f"{mv}:RecipeManagement")
            reason = await system.get_child(f"{hy}:ErrorReason")
            handler = Transitions()
            sub = await client.create_subscription(20, handler)
            await sub.subscribe_events(
                client.nodes.server, client.get_node(ua.NodeId(ids.STATE_CHANGED_EVENT_TYPE, mv))
            )
            errors = Transitions()
            err_sub = await client.create_subscription(20, errors)
            await err_sub.subscribe_events(
                client.nodes.server,
                [
                    client.get_node(ua.NodeId(ids.ERROR_EVENT_TYPE, mv)),
                    client.get_node(ua.NodeId(ids.ERROR_RESOLVED_EVENT_TYPE, mv)),
                ],
            )
            await asyncio.sleep(0.2)
            auto_state = await auto.get_child("0:CurrentState")
            seen: dict[str, Any] = {
                "executable_operational": {
                    m: await executable(top if m in ("Halt", "Reset", "SelectModeAutomatic") else auto, m, mv)
                    for m in ("Halt", "Reset", "SelectModeAutomatic", "StartSingleJob", "Stop")
                }
            }

            async def call(node: Node, method: str, *args: Any) -> int:
                try:
                    await node.call_method(f"{mv}:{method}", *args)
                    return 0
                except ua.UaStatusCodeError as exc:
                    return exc.code

            seen["select_in_operational"] = await call(top, "SelectModeAutomatic")
            assert await call(top, "Reset", *cause) == 0  # OperationalToPreoperational
            seen["reset_in_preoperational"] = await call(top, "Reset", *cause)
            seen["auto_while_preoperational"] = (await auto_state.read_data_value(raise_on_bad_status=False)).StatusCode
            seen["executable_preoperational"] = {
                "SelectModeAutomatic": await executable(top, "SelectModeAutomatic", mv),
                "StartSingleJob": await executable(auto, "StartSingleJob", mv),
            }
            assert await call(top, "Halt", *cause) == 0  # PreoperationalToHalted
            seen["halt_in_halted"] = await call(top, "Halt", *cause)
            seen["select_in_halted"] = await call(top, "SelectModeAutomatic")
            assert await call(top, "Reset", *cause) == 0  # HaltedToPreoperational
            assert await call(top, "SelectModeAutomatic") == 0  # PreoperationalToOperational
            seen["auto_when_operational"] = (await auto_state.read_data_value()).StatusCode
            assert await state(auto) == "Ready"
            assert await call(top, "Halt", *cause) == 0  # OperationalToHalted
            assert await call(top, "Reset", *cause) == 0
            assert await call(top, "SelectModeAutomatic") == 0

            # A recipe of the table whose model cannot be loaded: Error, with the reason.
            broken_id = ua.RecipeIdExternalDataType(Id="washer-broken")
            seen["prepare_broken"] = await call(recipes, "PrepareRecipe", broken_id, ua.RecipeIdInternalDataType(Id=""))
            seen["unknown_recipe"] = await call(
                recipes, "PrepareRecipe", ua.RecipeIdExternalDataType(Id="nope"), ua.RecipeIdInternalDataType(Id="")
            )
            seen["state_after_broken"] = await state(top)
            seen["reason"] = await reason.read_value()
            assert await call(top, "Halt", *cause) == 0  # ErrorToHalted
            assert await call(top, "Reset", *cause) == 0
            assert await call(top, "SelectModeAutomatic") == 0
            assert await call(recipes, "PrepareRecipe", broken_id, ua.RecipeIdInternalDataType(Id="")) != 0
            assert await call(top, "Reset", *cause) == 0  # ErrorToPreoperational
            seen["reason_after_reset"] = await reason.read_value()
            assert await call(top, "SelectModeAutomatic") == 0

            # A database outage as the record store reports it, then its end.
            def note(active: bool) -> None:
                event = StationEvent(
                    station_id="st-1",
                    kind="database-unavailable",
                    severity=Severity.ALARM if active else Severity.INFO,
                    message="database unavailable (connection refused); records kept on local disk",
                    active=active,
                )
                loop.call_soon_threadsafe(opened.station.note, event)

            note(True)
            await until(lambda: _in(top, "Error"))
            seen["outage_reason"] = await reason.read_value()
            note(False)
            await until(lambda: _in(top, "Operational"))
            await asyncio.sleep(0.3)
            seen["transitions"] = handler.seen
            seen["errors"] = errors.seen
            seen["mv"] = mv
            return seen

    with station_thread(opened, port) as box:
        seen = asyncio.run(plc(box["loop"]))

    assert seen["executable_operational"] == {
        "Halt": True,
        "Reset": True,
        "SelectModeAutomatic": False,
        "StartSingleJob": True,
        "Stop": False,
    }
    assert seen["auto_while_preoperational"].value == ua.StatusCodes.BadStateNotActive
    assert seen["executable_preoperational"] == {"SelectModeAutomatic": True, "StartSingleJob": False}
    assert seen["halt_in_halted"] == seen["select_in_halted"] == ua.StatusCodes.BadInvalidState
    assert seen["select_in_operational"] == seen["reset_in_preoperational"] == ua.StatusCodes.BadInvalidState
    assert seen["auto_when_operational"].is_good()
    assert seen["prepare_broken"] == ua.StatusCodes.BadConfigurationError
    assert seen["state_after_broken"] == "Error" and "washer-broken" in seen["reason"]
    assert seen["unknown_recipe"] == ua.StatusCodes.BadInvalidState  # refused in Error: nothing changes
    assert seen["reason_after_reset"] == ""
    assert "database unavailable" in seen["outage_reason"]

    names = [t["Transition"].Text for t in seen["transitions"]]
    assert names == [
        "OperationalToPreoperational",
        "PreoperationalToHalted",
        "HaltedToPreoperational",
        "PreoperationalToOperational",
        "OperationalToHalted",
        "HaltedToPreoperational",
        "PreoperationalToOperational",
        "OperationalToErrorAuto",
        "ErrorToHalted",
        "HaltedToPreoperational",
        "PreoperationalToOperational",
        "OperationalToErrorAuto",
        "ErrorToPreoperational",
        "PreoperationalToOperational",
        "OperationalToErrorAuto",
        "ErrorToOperationalAuto",
    ]
    mv = seen["mv"]
    for t in seen["transitions"]:
        transition = ids.TOP_TRANSITIONS[t["Transition"].Text]
        assert t["Transition/Id"] == ua.NodeId(transition.node, mv)
        assert t["FromState"].Text == transition.from_state and t["ToState"].Text == transition.to_state
        assert t["FromState/Id"] == ua.NodeId(ids.TOP_STATES[transition.from_state][0], mv)
        assert t["ToState/Id"] == ua.NodeId(ids.TOP_STATES[transition.to_state][0], mv)
    kinds = [e["EventType"] for e in seen["errors"]]
    assert kinds == [ua.NodeId(ids.ERROR_EVENT_TYPE, mv)] * 3 + [ua.NodeId(ids.ERROR_RESOLVED_EVENT_TYPE, mv)]
    assert "database unavailable" in seen["errors"][2]["Message"].Text


async def _in(node: Node, name: str) -> bool:
    return await state(node) == name


def test_continuous_results_carry_the_job_and_measurement_of_start_continuous(model_file: Path, tmp_path: Path) -> None:
    port = free_port()
    video = tmp_path / "cam.avi"
    from test_station import write_video

    write_video(video, 400)
    feedback = (
        f"feedback:\n  opcua: {{endpoint: 'opc.tcp://127.0.0.1:{port}/huoyan/', anonymous: true, security: [none]}}\n"
    )
    recipe_path = write_recipe(tmp_path, model_file, f"{{type: camera, device: {video}, rate: 20}}", feedback)
    opened = open_station(load(recipe_path), f"sqlite:///{tmp_path / 'r.db'}")

    async def plc() -> dict[str, Any]:
        async with Client(f"opc.tcp://127.0.0.1:{port}/huoyan/") as client:
            await client.load_data_type_definitions()
            mv = await client.get_namespace_index(ids.NAMESPACE_URI)
            auto = await browse(client, "st-1", "VisionStateMachine", "AutomaticModeStateMachine")
            last = await browse(client, "st-1", "ResultManagement", "Results", "LastResult")
            first = await (await last.get_child(f"{mv}:JobId")).read_value()

            async def has_result() -> bool:
                value = await last.read_value()
                return value is not None

            await until(has_result)
            automatic = (await last.read_value()).JobId.Id  # the job the station started itself
            assert await state(auto) == "ContinuousExecution"
            await auto.call_method(f"{mv}:Stop", ua.Variant(0, ua.VariantType.Int32), "")
            assert await state(auto) == "Ready"
            job, error = await auto.call_method(f"{mv}:StartContinuous", *start_args(meas="M-9"))

            async def of_new_job() -> bool:
                return (await last.read_value()).JobId.Id == job.Id

            await until(of_new_job)
            result = await last.read_value()
            await auto.call_method(f"{mv}:Stop", ua.Variant(0, ua.VariantType.Int32), "")
            return {"first": first, "automatic": automatic, "job": job.Id, "result": result, "error": error}

    with station_thread(opened, port):
        got = asyncio.run(plc())
    assert got["error"] == 0 and got["automatic"] and got["automatic"] != got["job"]
    assert got["result"].JobId.Id == got["job"] and got["result"].MeasId.Id == "M-9"


def test_confirm_all_acknowledges_alarms_and_the_line_adds_and_removes_recipes(
    model_file: Path, tmp_path: Path
) -> None:
    port = free_port()
    folder = tmp_path / "recipes"
    folder.mkdir()
    recipe = opcua_recipe(
        tmp_path, model_file, port, "anonymous: true, security: [none]", extra=f"  recipe_dir: {folder}\n"
    )
    body = (tmp_path / "recipe.yaml").read_text().split("feedback:")[0]
    for name in ("washer-side", "washer-back"):
        (folder / f"{name}.yaml").write_text(body.replace("recipe: washer-top", f"recipe: {name}"))
    (folder / "washer-other-station.yaml").write_text(
        body.replace("recipe: washer-top", "recipe: washer-other-station").replace("station: st-1", "station: st-2")
    )
    opened = open_station(recipe, f"sqlite:///{tmp_path / 'r.db'}")

    async def line(loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
        async with Client(f"opc.tcp://127.0.0.1:{port}/huoyan/") as client:
            await client.load_data_type_definitions()
            mv = await client.get_namespace_index(ids.NAMESPACE_URI)
            top = await browse(client, "st-1", "VisionStateMachine")
            recipes = await browse(client, "st-1", "RecipeManagement")
            for message in ("camera cable loose", "NG rate above the limit"):
                alarm = StationEvent(station_id="st-1", kind="test-alarm", severity=Severity.ALARM, message=message)
                loop.call_soon_threadsafe(opened.station.emit, alarm)
            await asyncio.sleep(0.5)
            await top.call_method(f"{mv}:ConfirmAll", ua.LocalizedText("seen at line 3"))
            out: dict[str, Any] = {}

            async def call(node: Node, method: str, *args: Any) -> Any:
                try:
                    return await node.call_method(f"{mv}:{method}", *args)
                except ua.UaStatusCodeError as exc:
                    return exc.code

            def ext(name: str) -> Any:
                return ua.RecipeIdExternalDataType(Id=name)

            product = ua.ProductIdDataType(Id="")
            out["added"] = await call(recipes, "AddRecipe", ext("washer-side"), product)
            out["back"] = await call(recipes, "AddRecipe", ext("washer-back"), product)
            out["again"] = await call(recipes, "AddRecipe", ext("washer-side"), product)
            out["missing"] = await call(recipes, "AddRecipe", ext("washer-none"), product)
            out["escape"] = await call(recipes, "AddRecipe", ext("../recipes/washer-side"), product)
            out["other_station"] = await call(recipes, "AddRecipe", ext("washer-other-station"), product)
            out["prepared"] = await call(
                recipes, "PrepareRecipe", ext("washer-side"), ua.RecipeIdInternalDataType(Id="")
            )
            out["remove_active"] = await call(recipes, "RemoveRecipe", ext("washer-side"))
            out["remove_back"] = await call(recipes, "RemoveRecipe", ext("washer-back"))
            out["remove_again"] = await call(recipes, "RemoveRecipe", ext("washer-back"))
            listed = await call(
                recipes,
                "GetRecipeListFiltered",
                ext(""),
                product,
                ua.Variant(2, ua.VariantType.Int32),
                ua.Variant(0, ua.VariantType.UInt32),
                ua.Variant(0, ua.VariantType.UInt32),
                ua.Variant(0, ua.VariantType.Int32),
            )
            out["listed"] = sorted(r.Id for r in listed[3])
            return out

    with station_thread(opened, port) as box:
        out = asyncio.run(line(box["loop"]))
    from huoyan.store.records import query_events

    alarms = [e for e in query_events(opened.engine, station="st-1") if e["kind"] == "test-alarm"]
    assert len(alarms) == 2
    assert all(e["acknowledged_by"] == "opcua" and e["ack_comment"] == "seen at line 3" for e in alarms)
    internal, recipe_node, product_node, transfer, error = out["added"]
    assert internal.Id == "washer-side:1" and transfer is False and error == 0
    assert recipe_node == product_node == ua.NodeId()  # no Recipes folder to point into
    assert out["again"] == out["escape"] == out["other_station"] == ua.StatusCodes.BadInvalidArgument
    assert out["missing"] == out["remove_again"] == ua.StatusCodes.BadNotFound
    assert out["prepared"][2] == 0
    assert out["remove_active"] == ua.StatusCodes.BadInvalidState
    assert out["remove_back"] == 0
    assert "washer-side:1" in out["listed"] and "washer-back:1" not in out["listed"]

    # The table's changes outlive a restart.
    again = open_station(load(tmp_path / "recipe.yaml"), f"sqlite:///{tmp_path / 'r.db'}")
    assert again.line is not None
    assert {r.recipe_id for r in again.line.recipes()} == {"washer-top", "washer-side"}
