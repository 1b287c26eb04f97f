"""The Machine Vision type system (OPC 40100-1), built in code on an asyncua server.

Creates, under the specification's namespace and NodeIds (``nodeids``): the data types a
PLC exchanges with a vision system (``TrimmedString``, ``Handle``, ``ResultStateDataType``,
``TriStateBooleanDataType``, the id structures derived from ``BinaryIdBaseDataType`` and
``ResultDataType``); the object types a station instantiates with their instance
declarations and modelling rules (``VisionSystemType`` with its mandatory
``VisionStateMachine``, recipe and result management, ``ResultFolderType``); the two state
machine types with their states, transitions and StateNumbers / TransitionNumbers;
``ResultType`` with its components; the event types the server fires; and the namespace's
metadata object. Only what Huoyan implements is declared: optional children it does not
offer (configuration management, file transfer, step models, simulation mode) are left
out of the types, as the specification allows.

Huoyan's own namespace adds ``VerdictDataType`` (OK 1, NG 2, ERROR 3) and
``InspectionResultDataType``, the structured result content that carries the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.manage_nodes import create_data_type, create_encoding
from asyncua.common.structures104 import new_struct_field

from huoyan.io.opcua import nodeids as ids

V = ua.VariantType
BASE_DATA_TYPE = ids.node_id(ua.ObjectIds.BaseDataType)
RULES = {ids.MANDATORY: ua.ObjectIds.ModellingRule_Mandatory, ids.OPTIONAL: ua.ObjectIds.ModellingRule_Optional}
# Above every NodeId of the specification's namespace: ids asyncua generates start here.
GENERATED_IDS_FROM = 100_000


@dataclass
class MachineVisionTypes:
    ns: int  # the specification's namespace
    huoyan_ns: int  # Huoyan's types
    classes: dict[str, Any]  # generated structure classes, by data type name

    def nid(self, number: int) -> ua.NodeId:
        return ids.node_id(number, self.ns)

    def new(self, name: str, **fields: Any) -> Any:
        # asyncua registers generated classes on its ``ua`` module once per process and
        # does not return them again to a second server (or a client) in that process.
        cls = self.classes.get(name) or getattr(ua, name)
        return cls(**fields)


def arg(name: str, datatype: ua.NodeId | int, array: bool = False) -> ua.Argument:
    a = ua.Argument()
    a.Name = name
    a.DataType = datatype if isinstance(datatype, ua.NodeId) else ids.node_id(datatype)
    a.ValueRank = ua.ValueRank.OneDimension if array else ua.ValueRank.Scalar
    a.ArrayDimensions = [0] if array else []
    a.Description = ua.LocalizedText(name)
    return a


INT32 = ua.ObjectIds.Int32
STRING = ua.ObjectIds.String
BOOLEAN = ua.ObjectIds.Boolean
UINT32 = ua.ObjectIds.UInt32


def method_args(t: MachineVisionTypes) -> dict[str, tuple[list[ua.Argument], list[ua.Argument]]]:
    """Input and output arguments of each method, as the specification declares them."""
    n = t.nid
    cause = [arg("Cause", INT32), arg("CauseDescription", STRING)]
    error = [arg("Error", INT32)]
    start = [
        arg("MeasId", n(ids.MEAS_ID)),
        arg("PartId", n(ids.PART_ID)),
        arg("RecipeId", n(ids.RECIPE_ID_EXTERNAL)),
        arg("ProductId", n(ids.PRODUCT_ID)),
        arg("Parameters", BASE_DATA_TYPE, array=True),
    ]
    recipe_in = [arg("ExternalId", n(ids.RECIPE_ID_EXTERNAL)), arg("InternalIdIn", n(ids.RECIPE_ID_INTERNAL))]
    handle = arg("ResultHandle", n(ids.HANDLE))
    result_query = [arg("ResultId", n(ids.RESULT_ID)), arg("Timeout", INT32)]
    # GetResultComponentsById: the result's fields but its id, with the handle after the first.
    fields = [
        arg(name, _datatype(dt, t.ns), array=name == "ResultContent")
        for name, (_, _, dt, _) in ids.RESULT_FIELDS.items()
    ]
    components = [fields[1], handle, *fields[2:], *error]
    result_filter = [
        arg("ResultState", n(ids.RESULT_STATE)),
        arg("MeasId", n(ids.MEAS_ID)),
        arg("PartId", n(ids.PART_ID)),
        arg("ExternalRecipeId", n(ids.RECIPE_ID_EXTERNAL)),
        arg("InternalRecipeId", n(ids.RECIPE_ID_INTERNAL)),
        arg("ExternalConfigurationId", n(ids.CONFIGURATION_ID)),
        arg("InternalConfigurationId", n(ids.CONFIGURATION_ID)),
        arg("ProductId", n(ids.PRODUCT_ID)),
        arg("JobId", n(ids.JOB_ID)),
        arg("MaxResults", UINT32),
        arg("StartIndex", UINT32),
        arg("Timeout", INT32),
    ]
    return {
        "Halt": (cause, error),
        "Reset": (cause, error),
        "SelectModeAutomatic": ([], error),
        "ConfirmAll": ([arg("Comment", ua.ObjectIds.LocalizedText)], []),
        "StartSingleJob": (start, [arg("JobId", n(ids.JOB_ID)), *error]),
        "StartContinuous": (start, [arg("JobId", n(ids.JOB_ID)), *error]),
        "Stop": (cause, error),
        "Abort": (cause, error),
        "PrepareRecipe": (
            recipe_in,
            [arg("InternalIdOut", n(ids.RECIPE_ID_INTERNAL)), arg("IsCompleted", BOOLEAN), *error],
        ),
        "UnprepareRecipe": (recipe_in, [arg("InternalIdOut", n(ids.RECIPE_ID_INTERNAL)), *error]),
        "AddRecipe": (
            [arg("ExternalId", n(ids.RECIPE_ID_EXTERNAL)), arg("ProductId", n(ids.PRODUCT_ID))],
            [
                arg("InternalId", n(ids.RECIPE_ID_INTERNAL)),
                arg("Recipe", ua.ObjectIds.NodeId),
                arg("Product", ua.ObjectIds.NodeId),
                arg("TransferRequired", BOOLEAN),
                *error,
            ],
        ),
        "RemoveRecipe": ([arg("ExternalId", n(ids.RECIPE_ID_EXTERNAL))], error),
        "PrepareProduct": (
            [arg("ProductId", n(ids.PRODUCT_ID))],
            [arg("InternalId", n(ids.RECIPE_ID_INTERNAL)), *error],
        ),
        "GetRecipeListFiltered": (
            [
                arg("ExternalId", n(ids.RECIPE_ID_EXTERNAL)),
                arg("ProductId", n(ids.PRODUCT_ID)),
                arg("IsPrepared", n(ids.TRI_STATE_BOOLEAN)),
                arg("MaxResults", UINT32),
                arg("StartIndex", UINT32),
                arg("Timeout", INT32),
            ],
            [
                arg("IsComplete", BOOLEAN),
                arg("ResultCount", UINT32),
                arg("RecipeHandle", n(ids.HANDLE)),
                arg("RecipeList", n(ids.RECIPE_ID_INTERNAL), array=True),
                *error,
            ],
        ),
        "GetResultById": (result_query, [handle, arg("Result", n(ids.RESULT_DATA)), *error]),
        "GetResultComponentsById": (result_query, components),
        "GetResultListFiltered": (
            result_filter,
            [
                arg("IsComplete", BOOLEAN),
                arg("ResultCount", UINT32),
                handle,
                arg("ResultList", n(ids.RESULT_DATA), array=True),
                *error,
            ],
        ),
        "ReleaseResultHandle": ([handle], error),
    }


async def _reserve_generated_ids(server: Server, ns: int) -> None:
    """asyncua numbers a node made without a NodeId after the highest number it finds in
    the namespace the first time it needs one. Make that above the specification's range,
    so a generated id never takes a NodeId the specification gives a node created later."""
    marker = await server.nodes.objects.add_folder(ids.node_id(GENERATED_IDS_FROM, ns), "reserve")
    generated = await server.nodes.objects.add_folder(ids.new_node_id(ns), "generated")
    await server.delete_nodes([generated, marker])


async def _struct(
    server: Server,
    ns: int,
    name: str,
    numbers: tuple[int, int | None],
    fields: list[ua.StructureField],
    base: Node | None = None,
    abstract: bool = False,
) -> Node:
    """A structure data type with the specification's NodeIds for itself and its binary
    encoding. A subtype's definition lists its base's fields first (OPC 10000-3, 8.48)."""
    data_type, encoding = numbers
    parent = base or server.nodes.base_structure_type
    dtype = await create_data_type(parent, ids.node_id(data_type, ns), ua.QualifiedName(name, ns))
    if abstract:
        await dtype.write_attribute(ua.AttributeIds.IsAbstract, ua.DataValue(ua.Variant(True, V.Boolean)))
    sdef = ua.StructureDefinition()
    sdef.BaseDataType = parent.nodeid
    optional = any(f.IsOptional for f in fields)
    sdef.StructureType = ua.StructureType.StructureWithOptionalFields if optional else ua.StructureType.Structure
    sdef.Fields = fields
    if encoding is not None:
        enc = await create_encoding(dtype, ids.node_id(encoding, ns), ua.QualifiedName("Default Binary", 0))
        sdef.DefaultEncodingId = enc.nodeid
    await dtype.write_data_type_definition(sdef)
    return dtype


async def _enum(parent: Node, node: ua.NodeId, name: ua.QualifiedName, values: dict[str, int]) -> None:
    dtype = await parent.add_data_type(node, name)
    edef = ua.EnumDefinition()
    for text, value in values.items():
        field = ua.EnumField()
        field.Name = text
        field.Value = value
        field.DisplayName = ua.LocalizedText(text)
        edef.Fields.append(field)
    await dtype.write_data_type_definition(edef)
    enum_values = [ua.EnumValueType(Value=v, DisplayName=ua.LocalizedText(k)) for k, v in values.items()]
    await dtype.add_property(
        ids.new_node_id(node.NamespaceIndex),
        ua.QualifiedName("EnumValues", 0),
        ua.Variant(enum_values, V.ExtensionObject),
        datatype=ids.node_id(ua.ObjectIds.EnumValueType),
    )


async def _data_types(server: Server, ns: int) -> None:
    n = lambda i: ids.node_id(i, ns)  # noqa: E731
    qn = lambda name: ua.QualifiedName(name, ns)  # noqa: E731
    await server.get_node(ua.ObjectIds.String).add_data_type(n(ids.TRIMMED_STRING), qn("TrimmedString"))
    await server.get_node(ua.ObjectIds.UInt32).add_data_type(n(ids.HANDLE), qn("Handle"))
    # OPC UA 1.05 added TrimmedString and Handle to namespace 0; asyncua then skips the
    # specification's types of the same names and cannot decode a structure using them.
    ua.basetype_by_datatype[n(ids.TRIMMED_STRING)] = "TrimmedString"
    ua.basetype_by_datatype[n(ids.HANDLE)] = "Handle"
    await server.get_node(ua.ObjectIds.Int32).add_data_type(n(ids.RESULT_STATE), qn("ResultStateDataType"))
    await _enum(
        server.nodes.enum_data_type,
        n(ids.TRI_STATE_BOOLEAN),
        qn("TriStateBooleanDataType"),
        {"FALSE_0": 0, "TRUE_1": 1, "DONTCARE_2": 2},
    )
    f = new_struct_field
    trimmed = n(ids.TRIMMED_STRING)
    described = [f("Id", trimmed), f("Description", V.LocalizedText, optional=True)]
    binary_id = [
        f("Id", trimmed),
        f("Version", trimmed, optional=True),
        f("Hash", V.ByteString, optional=True),
        f("HashAlgorithm", V.String, optional=True),
        f("Description", V.LocalizedText, optional=True),
    ]
    base = await _struct(server, ns, "BinaryIdBaseDataType", (ids.BINARY_ID_BASE, None), binary_id, abstract=True)
    for name, numbers in (
        ("RecipeIdExternalDataType", (ids.RECIPE_ID_EXTERNAL, 5002)),
        ("RecipeIdInternalDataType", (ids.RECIPE_ID_INTERNAL, 5268)),
        ("ConfigurationIdDataType", (ids.CONFIGURATION_ID, 5090)),
    ):
        await _struct(server, ns, name, numbers, binary_id, base=base)
    simple = {
        "MeasIdDataType": ((ids.MEAS_ID, 5006), described),
        "PartIdDataType": ((ids.PART_ID, 5013), described),
        "ProductIdDataType": ((ids.PRODUCT_ID, 5224), described),
        "JobIdDataType": ((ids.JOB_ID, 5008), [f("Id", trimmed)]),
        "ResultIdDataType": ((ids.RESULT_ID, 5274), [f("Id", trimmed)]),
        "ProcessingTimesDataType": (
            (ids.PROCESSING_TIMES, 5016),
            [
                f("StartTime", ids.node_id(ua.ObjectIds.UtcTime)),
                f("EndTime", ids.node_id(ua.ObjectIds.UtcTime)),
                f("AcquisitionDuration", ids.node_id(ua.ObjectIds.Duration), optional=True),
                f("ProcessingDuration", ids.node_id(ua.ObjectIds.Duration), optional=True),
            ],
        ),
    }
    for name, (numbers, fields) in simple.items():
        await _struct(server, ns, name, numbers, fields)
    await _struct(
        server,
        ns,
        "ResultDataType",
        (ids.RESULT_DATA, 5018),
        [
            f(name, _datatype(dt, ns), array=name == "ResultContent", optional=rule == ids.OPTIONAL)
            for name, (_, _, dt, rule) in ids.RESULT_FIELDS.items()
        ],
    )


async def _huoyan_types(server: Server, hns: int) -> None:
    """The verdict and the structured result content, in Huoyan's namespace."""
    verdict = ids.node_id(ids.VERDICT_DATA_TYPE, hns)
    await _enum(server.nodes.enum_data_type, verdict, ua.QualifiedName("VerdictDataType", hns), ids.VERDICTS)
    f = new_struct_field
    await _struct(
        server,
        hns,
        "InspectionResultDataType",
        ids.INSPECTION_RESULT_DATA_TYPE,
        [
            f("Verdict", verdict, description="OK 1, NG 2, ERROR 3"),
            f("Score", V.Double, description="raw anomaly score (NaN when there is none)"),
            f("Threshold", V.Double, description="the score above which a part is NG (NaN when there is none)"),
            f("Regions", V.UInt32, description="number of defect regions found"),
            f("RecordKey", V.String, description="the key of the stored inspection record"),
            f("Error", V.String, description="why the inspection failed (empty unless ERROR)"),
        ],
    )


async def _declare(node: Node, rule: str) -> Node:
    await node.add_reference(RULES[rule], ua.ObjectIds.HasModellingRule, True, False)
    return node


async def _states(server: Server, machine_type: Node, ns: int, states: dict[str, tuple[int, int, int]]) -> None:
    for name, (node_number, number_property, state_number) in states.items():
        state = await machine_type.add_object(
            ids.node_id(node_number, ns), ua.QualifiedName(name, ns), objecttype=ua.ObjectIds.StateType
        )
        # StateType's instantiation made a StateNumber with a NodeId of its own; use the specification's.
        await server.delete_nodes([await state.get_child(ua.QualifiedName("StateNumber", 0))])
        await state.add_property(
            ids.node_id(number_property, ns), ua.QualifiedName("StateNumber", 0), ua.Variant(state_number, V.UInt32)
        )


async def _transitions(
    server: Server, machine_type: Node, ns: int, transitions: dict[str, ids.Transition], methods: dict[str, Node]
) -> None:
    states = {**ids.TOP_STATES, **ids.AUTO_STATES}
    for name, tr in transitions.items():
        node = await machine_type.add_object(
            ids.node_id(tr.node, ns), ua.QualifiedName(name, ns), objecttype=ua.ObjectIds.TransitionType
        )
        for made in await node.get_children():
            await server.delete_nodes([made])
        await node.add_property(
            ids.node_id(tr.number_property, ns),
            ua.QualifiedName("TransitionNumber", 0),
            ua.Variant(tr.number, V.UInt32),
        )
        await node.add_reference(ids.node_id(states[tr.from_state][0], ns), ua.ObjectIds.FromState)
        await node.add_reference(ids.node_id(states[tr.to_state][0], ns), ua.ObjectIds.ToState)
        await node.add_reference(ids.node_id(ids.STATE_CHANGED_EVENT_TYPE, ns), ua.ObjectIds.HasEffect)
        if tr.cause in methods:
            await node.add_reference(methods[tr.cause].nodeid, ua.ObjectIds.HasCause)


async def _not_on_type(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant]:
    raise ua.UaStatusCodeError(ua.StatusCodes.BadMethodInvalid)  # call the instance's method


async def _event_types(server: Server, ns: int, types: MachineVisionTypes) -> None:
    n = lambda i: ids.node_id(i, ns)  # noqa: E731
    qn = lambda name: ua.QualifiedName(name, ns)  # noqa: E731
    base = server.get_node(ua.ObjectIds.BaseEventType)
    transition = server.get_node(ua.ObjectIds.TransitionEventType)
    for number, name in (
        (ids.STATE_CHANGED_EVENT_TYPE, "StateChangedEventType"),
        (ids.ERROR_EVENT_TYPE, "ErrorEventType"),
        (ids.ERROR_RESOLVED_EVENT_TYPE, "ErrorResolvedEventType"),
    ):
        await transition.add_object_type(n(number), qn(name))
    for number, name in ((ids.JOB_STARTED_EVENT_TYPE, "JobStartedEventType"), (ids.READY_EVENT_TYPE, "ReadyEventType")):
        event_type = await base.add_object_type(n(number), qn(name))
        await _property(
            event_type,
            n(ids.JOB_ID_PROPERTIES[number]),
            qn("JobId"),
            _default(types, ids.JOB_ID),
            n(ids.JOB_ID),
            ids.MANDATORY,
        )
    prepared = await base.add_object_type(n(ids.RECIPE_PREPARED_EVENT_TYPE), qn("RecipePreparedEventType"))
    for name, (number, prepared_type, rule) in ids.RECIPE_PREPARED_PROPERTIES.items():
        await _property(prepared, n(number), qn(name), _default(types, prepared_type), n(prepared_type), rule)
    ready = await base.add_object_type(n(ids.RESULT_READY_EVENT_TYPE), qn("ResultReadyEventType"))
    for name, (_, property_number, datatype, rule) in ids.RESULT_FIELDS.items():
        if property_number is not None:
            await _property(
                ready,
                n(property_number),
                qn(name),
                _default(types, datatype),
                _datatype(datatype, ns),
                rule,
                array=name == "ResultContent",
            )


ID_STRUCTS = {
    ids.RESULT_ID: "ResultIdDataType",
    ids.MEAS_ID: "MeasIdDataType",
    ids.PART_ID: "PartIdDataType",
    ids.JOB_ID: "JobIdDataType",
    ids.PRODUCT_ID: "ProductIdDataType",
    ids.RECIPE_ID_EXTERNAL: "RecipeIdExternalDataType",
    ids.RECIPE_ID_INTERNAL: "RecipeIdInternalDataType",
    ids.CONFIGURATION_ID: "ConfigurationIdDataType",
}


def variant_type(datatype: int | str) -> ua.VariantType:
    """How a value of one of ``RESULT_FIELDS``' data types travels in a Variant."""
    if isinstance(datatype, int) and datatype != ids.RESULT_STATE:
        return V.ExtensionObject
    return {ids.RESULT_STATE: V.Int32, "Boolean": V.Boolean, "UtcTime": V.DateTime, "BaseDataType": V.Variant}[datatype]


def _default(types: MachineVisionTypes, datatype: int | str) -> ua.Variant:
    """A typed empty value: asyncua takes an event field's encoding from its type's default."""
    if datatype in ID_STRUCTS:
        return ua.Variant(types.new(ID_STRUCTS[datatype], Id=""))
    empty = {V.Int32: 0, V.Boolean: False, V.Variant: []}
    kind = variant_type(datatype)
    return ua.Variant(empty.get(kind), kind)


def _datatype(datatype: int | str, ns: int) -> ua.NodeId:
    if isinstance(datatype, str):
        return ids.node_id(getattr(ua.ObjectIds, datatype))
    return ids.node_id(datatype, ns)


async def _property(
    owner: Node,
    node: ua.NodeId,
    name: ua.QualifiedName,
    value: ua.Variant,
    datatype: ua.NodeId,
    rule: str,
    array: bool = False,
) -> Node:
    prop = await owner.add_property(node, name, value, datatype=datatype)
    if array:
        await prop.write_value_rank(ua.ValueRank.OneDimension)
    return await _declare(prop, rule)


async def _result_type(server: Server, ns: int) -> None:
    n = lambda i: ids.node_id(i, ns)  # noqa: E731
    data_variable = server.get_node(ua.ObjectIds.BaseDataVariableType)
    result_type = await data_variable.add_variable_type(
        n(ids.RESULT_TYPE), ua.QualifiedName("ResultType", ns), n(ids.RESULT_DATA)
    )
    for name, (number, _, datatype, rule) in ids.RESULT_FIELDS.items():
        var = await result_type.add_variable(
            n(number), ua.QualifiedName(name, ns), ua.Variant(None), datatype=_datatype(datatype, ns)
        )
        if name == "ResultContent":
            await var.write_value_rank(ua.ValueRank.OneDimension)
        await _declare(var, rule)


async def _namespace_metadata(server: Server, ns: int) -> None:
    """The NamespaceMetadata object of the specification's namespace, under Server/Namespaces."""
    number, props = ids.NAMESPACE_METADATA
    namespaces = server.get_node(ua.ObjectIds.Server_Namespaces)
    meta = await namespaces.add_object(
        ids.node_id(number, ns), ua.QualifiedName(ids.NAMESPACE_URI, ns), objecttype=ua.ObjectIds.NamespaceMetadataType
    )
    published = datetime.fromisoformat(ids.NAMESPACE_PUBLICATION.replace("Z", "+00:00"))
    values = {
        "IsNamespaceSubset": ua.Variant(True, V.Boolean),  # only what Huoyan implements is declared
        "NamespacePublicationDate": ua.Variant(published, V.DateTime),
        "NamespaceUri": ua.Variant(ids.NAMESPACE_URI, V.String),
        "NamespaceVersion": ua.Variant(ids.NAMESPACE_VERSION, V.String),
        "StaticNodeIdTypes": ua.Variant([ua.IdType.Numeric], V.Int32),
    }
    for made in await meta.get_children():
        await server.delete_nodes([made])
    for name, value in values.items():
        await meta.add_property(ids.node_id(props[name], ns), ua.QualifiedName(name, 0), value)


async def build_types(server: Server) -> MachineVisionTypes:
    ns = await server.register_namespace(ids.NAMESPACE_URI)
    hns = await server.register_namespace(ids.HUOYAN_URI)
    await _reserve_generated_ids(server, ns)
    await _reserve_generated_ids(server, hns)
    n = lambda i: ids.node_id(i, ns)  # noqa: E731
    qn = lambda name: ua.QualifiedName(name, ns)  # noqa: E731

    await _data_types(server, ns)
    await _huoyan_types(server, hns)
    classes = await server.load_data_type_definitions()
    types = MachineVisionTypes(ns, hns, classes)
    args = method_args(types)

    fsm = server.get_node(ua.ObjectIds.FiniteStateMachineType)
    base = server.get_node(ua.ObjectIds.BaseObjectType)
    owners = {
        ids.VISION_STATE_MACHINE_TYPE: await fsm.add_object_type(
            n(ids.VISION_STATE_MACHINE_TYPE), qn("VisionStateMachineType")
        ),
        ids.VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE: await fsm.add_object_type(
            n(ids.VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE), qn("VisionAutomaticModeStateMachineType")
        ),
        ids.VISION_SYSTEM_TYPE: await base.add_object_type(n(ids.VISION_SYSTEM_TYPE), qn("VisionSystemType")),
        ids.RECIPE_MANAGEMENT_TYPE: await base.add_object_type(
            n(ids.RECIPE_MANAGEMENT_TYPE), qn("RecipeManagementType")
        ),
        ids.RESULT_MANAGEMENT_TYPE: await base.add_object_type(
            n(ids.RESULT_MANAGEMENT_TYPE), qn("ResultManagementType")
        ),
        ids.RESULT_FOLDER_TYPE: await server.get_node(ua.ObjectIds.FolderType).add_object_type(
            n(ids.RESULT_FOLDER_TYPE), qn("ResultFolderType")
        ),
    }
    top, auto = owners[ids.VISION_STATE_MACHINE_TYPE], owners[ids.VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE]
    await _states(server, top, ns, ids.TOP_STATES)
    await _states(server, auto, ns, ids.AUTO_STATES)
    await _event_types(server, ns, types)
    await _result_type(server, ns)
    await _namespace_metadata(server, ns)

    method_owner = {
        **dict.fromkeys(("Halt", "Reset", "SelectModeAutomatic", "ConfirmAll"), top),
        **dict.fromkeys(("StartSingleJob", "StartContinuous", "Stop", "Abort"), auto),
        **dict.fromkeys(
            (
                "PrepareRecipe",
                "UnprepareRecipe",
                "PrepareProduct",
                "GetRecipeListFiltered",
                "AddRecipe",
                "RemoveRecipe",
            ),
            owners[ids.RECIPE_MANAGEMENT_TYPE],
        ),
        **dict.fromkeys(
            ("GetResultById", "GetResultComponentsById", "GetResultListFiltered", "ReleaseResultHandle"),
            owners[ids.RESULT_MANAGEMENT_TYPE],
        ),
    }
    methods: dict[str, Node] = {}
    for name, owner in method_owner.items():
        number, rule = ids.METHODS[name]
        method = await owner.add_method(n(number), qn(name), _not_on_type)
        await _add_arguments(method, *args[name])
        methods[name] = await _declare(method, rule)
    await _transitions(server, top, ns, ids.TOP_TRANSITIONS, methods)
    await _transitions(server, auto, ns, ids.AUTO_TRANSITIONS, methods)
    for owner_type, number, name, typedef, rule in ids.OBJECT_DECLARATIONS:
        owner = owners[owner_type]
        child = await owner.add_object(n(number), qn(name), objecttype=n(typedef))
        await _declare(child, rule)
        await _rules_as_on_type(child, await _children_of_type(server.get_node(n(typedef))))
    return types


async def _name(node: Node) -> tuple[int, str]:
    bn = await node.read_browse_name()
    return bn.NamespaceIndex, bn.Name


async def _children_of_type(type_node: Node) -> dict[tuple[int, str], Node]:
    """A type's instance declarations, its supertypes' included (the nearest wins)."""
    out: dict[tuple[int, str], Node] = {}
    node: Node | None = type_node
    while node is not None:
        for child in await node.get_children():
            out.setdefault(await _name(child), child)
        supertypes = await node.get_referenced_nodes(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
        node = supertypes[0] if supertypes else None
    return out


async def _rules_as_on_type(node: Node, template: dict[tuple[int, str], Node]) -> None:
    """asyncua instantiates a type's children without their modelling rules; an instance
    declaration needs them (an instance made from the outer type would skip its children
    otherwise). Each descendant takes the rule of the declaration it was made from."""
    for child in await node.get_children():
        source = template.get(await _name(child))
        if source is None:
            continue
        rules = await source.get_referenced_nodes(ua.ObjectIds.HasModellingRule)
        if rules and not await child.get_referenced_nodes(ua.ObjectIds.HasModellingRule):
            await child.add_reference(rules[0].nodeid, ua.ObjectIds.HasModellingRule, True, False)
        inner = {await _name(c): c for c in await source.get_children()}
        await _rules_as_on_type(child, inner)


async def _add_arguments(method: Node, inputs: list[ua.Argument], outputs: list[ua.Argument]) -> None:
    """InputArguments and OutputArguments, Mandatory so that an instance's method gets them."""
    ns = method.nodeid.NamespaceIndex
    for name, arguments in (("InputArguments", inputs), ("OutputArguments", outputs)):
        if not arguments:
            continue
        prop = await method.add_property(
            ids.new_node_id(ns),
            ua.QualifiedName(name, 0),
            ua.Variant(arguments, V.ExtensionObject),
            datatype=ids.node_id(ua.ObjectIds.Argument),
        )
        await prop.write_value_rank(ua.ValueRank.OneDimension)
        await _declare(prop, ids.MANDATORY)
