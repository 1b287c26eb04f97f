"""The Machine Vision type system (OPC 40100-1), built in code on an asyncua server.

Creates, under the specification's namespace and NodeIds: the data types a PLC
exchanges with a vision system (ids of jobs, parts, recipes, products, results and
``ResultDataType``), the two state machine types with their states and StateNumbers,
the method declarations of the automatic mode and of recipe and result management,
``ResultType`` and ``ResultReadyEventType``. Where Huoyan departs from the NodeSet it
says so: id fields are ``String`` rather than the ``TrimmedString`` subtype, the
recipe id structures carry their abstract base's fields directly, and the transition
objects of the state machines are not modelled (``CurrentState`` with ``Id`` and
``Number`` is).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.manage_nodes import create_data_type, create_encoding
from asyncua.common.structures104 import new_struct_field

from huoyan.io.opcua import nodeids as ids

V = ua.VariantType
BASE_DATA_TYPE = ids.node_id(ua.ObjectIds.BaseDataType)


@dataclass
class MachineVisionTypes:
    ns: int
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
    return {
        "Halt": (cause, error),
        "Reset": (cause, error),
        "SelectModeAutomatic": ([], error),
        "StartSingleJob": (start, [arg("JobId", n(ids.JOB_ID)), *error]),
        "StartContinuous": (start, [arg("JobId", n(ids.JOB_ID)), *error]),
        "Stop": (cause, error),
        "Abort": (cause, error),
        "PrepareRecipe": (
            recipe_in,
            [arg("InternalIdOut", n(ids.RECIPE_ID_INTERNAL)), arg("IsCompleted", BOOLEAN), *error],
        ),
        "UnprepareRecipe": (recipe_in, [arg("InternalIdOut", n(ids.RECIPE_ID_INTERNAL)), *error]),
        "PrepareProduct": (
            [arg("ProductId", n(ids.PRODUCT_ID))],
            [arg("InternalId", n(ids.RECIPE_ID_INTERNAL)), *error],
        ),
        "GetRecipeListFiltered": (
            [
                arg("ExternalId", n(ids.RECIPE_ID_EXTERNAL)),
                arg("ProductId", n(ids.PRODUCT_ID)),
                arg("IsPrepared", INT32),
                arg("MaxResults", UINT32),
                arg("StartIndex", UINT32),
                arg("Timeout", INT32),
            ],
            [
                arg("IsComplete", BOOLEAN),
                arg("ResultCount", UINT32),
                arg("RecipeHandle", UINT32),
                arg("RecipeList", n(ids.RECIPE_ID_INTERNAL), array=True),
                *error,
            ],
        ),
        "GetResultById": (
            [arg("ResultId", n(ids.RESULT_ID)), arg("Timeout", INT32)],
            [arg("ResultHandle", UINT32), arg("Result", n(ids.RESULT_DATA)), *error],
        ),
    }


async def _struct(
    server: Server, ns: int, name: str, numbers: tuple[int, int], fields: list[ua.StructureField]
) -> None:
    """A structure data type with the specification's NodeIds for itself and its binary encoding."""
    data_type, encoding = numbers
    base = server.nodes.base_structure_type
    dtype = await create_data_type(base, ids.node_id(data_type, ns), ua.QualifiedName(name, ns))
    enc = await create_encoding(dtype, ids.node_id(encoding, ns), ua.QualifiedName("Default Binary", 0))
    sdef = ua.StructureDefinition()
    sdef.BaseDataType = server.nodes.base_structure_type.nodeid
    optional = any(f.IsOptional for f in fields)
    sdef.StructureType = ua.StructureType.StructureWithOptionalFields if optional else ua.StructureType.Structure
    sdef.Fields = fields
    sdef.DefaultEncodingId = enc.nodeid
    await dtype.write_data_type_definition(sdef)


async def _structs(server: Server, ns: int) -> None:
    n = lambda i: ids.node_id(i, ns)  # noqa: E731
    f = new_struct_field
    described = [f("Id", V.String), f("Description", V.LocalizedText, optional=True)]
    binary_id = [
        f("Id", V.String),
        f("Version", V.String, optional=True),
        f("Hash", V.ByteString, optional=True),
        f("HashAlgorithm", V.String, optional=True),
        f("Description", V.LocalizedText, optional=True),
    ]
    simple = {
        "MeasIdDataType": ((ids.MEAS_ID, 5006), described),
        "PartIdDataType": ((ids.PART_ID, 5013), described),
        "ProductIdDataType": ((ids.PRODUCT_ID, 5224), described),
        "JobIdDataType": ((ids.JOB_ID, 5008), [f("Id", V.String)]),
        "ResultIdDataType": ((ids.RESULT_ID, 5274), [f("Id", V.String)]),
        "RecipeIdExternalDataType": ((ids.RECIPE_ID_EXTERNAL, 5002), binary_id),
        "RecipeIdInternalDataType": ((ids.RECIPE_ID_INTERNAL, 5268), binary_id),
        "ConfigurationIdDataType": ((ids.CONFIGURATION_ID, 5090), binary_id),
        "ProcessingTimesDataType": (
            (ids.PROCESSING_TIMES, 5016),
            [
                f("StartTime", V.DateTime),
                f("EndTime", V.DateTime),
                f("AcquisitionDuration", V.Double, optional=True),
                f("ProcessingDuration", V.Double, optional=True),
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
            f("ResultId", n(ids.RESULT_ID)),
            f("HasTransferableDataOnFile", V.Boolean, optional=True),
            f("IsPartial", V.Boolean),
            f("IsSimulated", V.Boolean, optional=True),
            f("ResultState", V.Int32),
            f("MeasId", n(ids.MEAS_ID), optional=True),
            f("PartId", n(ids.PART_ID), optional=True),
            f("ExternalRecipeId", n(ids.RECIPE_ID_EXTERNAL), optional=True),
            f("InternalRecipeId", n(ids.RECIPE_ID_INTERNAL)),
            f("ProductId", n(ids.PRODUCT_ID), optional=True),
            f("ExternalConfigurationId", n(ids.CONFIGURATION_ID), optional=True),
            f("InternalConfigurationId", n(ids.CONFIGURATION_ID)),
            f("JobId", n(ids.JOB_ID)),
            f("CreationTime", V.DateTime),
            f("ProcessingTimes", n(ids.PROCESSING_TIMES), optional=True),
            f("ResultContent", BASE_DATA_TYPE, array=True, optional=True),
        ],
    )


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


async def _not_on_type(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant]:
    raise ua.UaStatusCodeError(ua.StatusCodes.BadMethodInvalid)  # call the instance's method


async def build_types(server: Server) -> MachineVisionTypes:
    ns = await server.register_namespace(ids.NAMESPACE_URI)
    n = lambda i: ids.node_id(i, ns)  # noqa: E731
    qn = lambda name: ua.QualifiedName(name, ns)  # noqa: E731

    int32 = server.get_node(ua.ObjectIds.Int32)
    await int32.add_data_type(n(ids.RESULT_STATE), qn("ResultStateDataType"))
    await _structs(server, ns)
    classes = await server.load_data_type_definitions()
    types = MachineVisionTypes(ns, classes)
    args = method_args(types)

    fsm = server.get_node(ua.ObjectIds.FiniteStateMachineType)
    top = await fsm.add_object_type(n(ids.VISION_STATE_MACHINE_TYPE), qn("VisionStateMachineType"))
    await _states(server, top, ns, ids.TOP_STATES)
    auto = await fsm.add_object_type(
        n(ids.VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE), qn("VisionAutomaticModeStateMachineType")
    )
    await _states(server, auto, ns, ids.AUTO_STATES)
    base = server.get_node(ua.ObjectIds.BaseObjectType)
    await base.add_object_type(n(ids.VISION_SYSTEM_TYPE), qn("VisionSystemType"))
    recipes = await base.add_object_type(n(ids.RECIPE_MANAGEMENT_TYPE), qn("RecipeManagementType"))
    results = await base.add_object_type(n(ids.RESULT_MANAGEMENT_TYPE), qn("ResultManagementType"))
    folder = server.get_node(ua.ObjectIds.FolderType)
    await folder.add_object_type(n(ids.RESULT_FOLDER_TYPE), qn("ResultFolderType"))
    owners = {
        "Halt": top,
        "Reset": top,
        "SelectModeAutomatic": top,
        "StartSingleJob": auto,
        "StartContinuous": auto,
        "Stop": auto,
        "Abort": auto,
        "PrepareRecipe": recipes,
        "UnprepareRecipe": recipes,
        "PrepareProduct": recipes,
        "GetRecipeListFiltered": recipes,
        "GetResultById": results,
    }
    for name, owner in owners.items():
        inputs, outputs = args[name]
        await owner.add_method(n(ids.METHODS[name]), qn(name), _not_on_type, inputs, outputs)

    data_variable = server.get_node(ua.ObjectIds.BaseDataVariableType)
    await data_variable.add_variable_type(n(ids.RESULT_TYPE), qn("ResultType"), n(ids.RESULT_DATA))
    event_type = await server.get_node(ua.ObjectIds.BaseEventType).add_object_type(
        n(ids.RESULT_READY_EVENT_TYPE), qn("ResultReadyEventType")
    )
    empty = {"Id": ""}
    for number, name, value, datatype in (
        (6295, "ResultId", types.new("ResultIdDataType", **empty), n(ids.RESULT_ID)),
        (6296, "IsPartial", False, None),
        (6298, "ResultState", ua.Variant(0, V.Int32), n(ids.RESULT_STATE)),
        (6299, "MeasId", types.new("MeasIdDataType", **empty), n(ids.MEAS_ID)),
        (6300, "JobId", types.new("JobIdDataType", **empty), n(ids.JOB_ID)),
        (6301, "ExternalRecipeId", types.new("RecipeIdExternalDataType", **empty), n(ids.RECIPE_ID_EXTERNAL)),
        (6302, "InternalRecipeId", types.new("RecipeIdInternalDataType", **empty), n(ids.RECIPE_ID_INTERNAL)),
        (6303, "CreationTime", ua.Variant(None, V.DateTime), None),
        (6304, "PartId", types.new("PartIdDataType", **empty), n(ids.PART_ID)),
        (6306, "ResultContent", ua.Variant([], V.String), None),
    ):
        await event_type.add_property(n(number), qn(name), value, datatype=datatype)
    return types
