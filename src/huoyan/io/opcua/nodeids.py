"""NodeIds of OPC 40100-1 (OPC UA for Machine Vision) that Huoyan's server uses.

Numbers are those of the companion specification's namespace
(``http://opcfoundation.org/UA/MachineVision``, version 1.0.0 of its NodeSet in the OPC
Foundation's UA-Nodeset repository), so a generic client finds the types where it expects
them. The address space is built from these in code; no NodeSet XML is shipped. The
conformance test compares what is built with the official NodeSet file.
"""

from __future__ import annotations

from typing import NamedTuple

from asyncua import ua

NAMESPACE_URI = "http://opcfoundation.org/UA/MachineVision"
NAMESPACE_VERSION = "1.0.0"
NAMESPACE_PUBLICATION = "2019-07-11T10:18:27Z"
NAMESPACE_METADATA = (5009, {"IsNamespaceSubset": 6549, "NamespacePublicationDate": 6552, "NamespaceUri": 6553,
                             "NamespaceVersion": 6554, "StaticNodeIdTypes": 6556})  # fmt: skip

# Object types
VISION_SYSTEM_TYPE = 1003
RECIPE_MANAGEMENT_TYPE = 1004
RESULT_MANAGEMENT_TYPE = 1007
RESULT_FOLDER_TYPE = 1016
VISION_STATE_MACHINE_TYPE = 1017
VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE = 1021
RESULT_TYPE = 2002  # VariableType

# Event types (the transition events derive from TransitionEventType, the others from BaseEventType)
JOB_STARTED_EVENT_TYPE = 1013
STATE_CHANGED_EVENT_TYPE = 1018
ERROR_EVENT_TYPE = 1019
ERROR_RESOLVED_EVENT_TYPE = 1020
RECIPE_PREPARED_EVENT_TYPE = 1022
READY_EVENT_TYPE = 1023
RESULT_READY_EVENT_TYPE = 1024

# Data types
RECIPE_ID_EXTERNAL = 3002
PRODUCT_ID = 3003
PART_ID = 3004
PROCESSING_TIMES = 3005
RESULT_DATA = 3006
CONFIGURATION_ID = 3008
RESULT_STATE = 3009
RECIPE_ID_INTERNAL = 3013
TRI_STATE_BOOLEAN = 3014
MEAS_ID = 3015
JOB_ID = 3016
TRIMMED_STRING = 3017
HANDLE = 3018
BINARY_ID_BASE = 3019
RESULT_ID = 3021

# ResultStateDataType (OPC 40100-1 12.19): whether a result is complete, not what it says.
RESULT_COMPLETED = 1
RESULT_PROCESSING = 2
RESULT_ABORTED = 3
RESULT_FAILED = 4

# States of VisionStateMachineType and their StateNumber properties
TOP_STATES = {
    "Preoperational": (5028, 6226, 1),
    "Halted": (5029, 6227, 2),
    "Error": (5030, 6228, 3),
    "Operational": (5031, 6229, 4),
}
# States of VisionAutomaticModeStateMachineType and their StateNumber properties
AUTO_STATES = {
    "Initialized": (5056, 6259, 5),
    "Ready": (5057, 6260, 6),
    "SingleExecution": (5058, 6261, 7),
    "ContinuousExecution": (5059, 6262, 8),
}


class Transition(NamedTuple):
    node: int
    number_property: int
    number: int
    from_state: str
    to_state: str
    cause: str | None  # the method that causes it; None for an automatic transition


# The transitions of VisionStateMachineType (TOP) and VisionAutomaticModeStateMachineType (AUTO).
TOP_TRANSITIONS = {
    "ErrorToHalted": Transition(5041, 6239, 321, "Error", "Halted", "Halt"),
    "ErrorToHaltedAuto": Transition(5042, 6240, 320, "Error", "Halted", None),
    "ErrorToOperationalAuto": Transition(5255, 6341, 340, "Error", "Operational", None),
    "ErrorToPreoperational": Transition(5039, 6237, 311, "Error", "Preoperational", "Reset"),
    "ErrorToPreoperationalAuto": Transition(5040, 6238, 310, "Error", "Preoperational", None),
    "HaltedToPreoperational": Transition(5037, 6235, 211, "Halted", "Preoperational", "Reset"),
    "HaltedToPreoperationalAuto": Transition(5038, 6236, 210, "Halted", "Preoperational", None),
    "OperationalToErrorAuto": Transition(5051, 6249, 430, "Operational", "Error", None),
    "OperationalToHalted": Transition(5049, 6247, 421, "Operational", "Halted", "Halt"),
    "OperationalToHaltedAuto": Transition(5050, 6248, 420, "Operational", "Halted", None),
    "OperationalToPreoperational": Transition(5047, 6245, 411, "Operational", "Preoperational", "Reset"),
    "OperationalToPreoperationalAuto": Transition(5048, 6246, 410, "Operational", "Preoperational", None),
    "PreoperationalToErrorAuto": Transition(5034, 6232, 130, "Preoperational", "Error", None),
    "PreoperationalToHalted": Transition(5032, 6230, 121, "Preoperational", "Halted", "Halt"),
    "PreoperationalToHaltedAuto": Transition(5033, 6231, 120, "Preoperational", "Halted", None),
    "PreoperationalToInitialized": Transition(5035, 6233, 151, "Preoperational", "Initialized", "SelectModeAutomatic"),
    "PreoperationalToInitializedAuto": Transition(5036, 6234, 150, "Preoperational", "Initialized", None),
    "PreoperationalToOperational": Transition(5253, 6171, 141, "Preoperational", "Operational", "SelectModeAutomatic"),
    "PreoperationalToOperationalAuto": Transition(5254, 6221, 140, "Preoperational", "Operational", None),
}
AUTO_TRANSITIONS = {
    "ContinuousExecutionToReadyAbort": Transition(5072, 6275, 862, "ContinuousExecution", "Ready", "Abort"),
    "ContinuousExecutionToReadyAuto": Transition(5073, 6276, 860, "ContinuousExecution", "Ready", None),
    "ContinuousExecutionToReadyStop": Transition(5071, 6274, 861, "ContinuousExecution", "Ready", "Stop"),
    "InitializedToReadyAuto": Transition(5061, 6264, 560, "Initialized", "Ready", None),
    "InitializedToReadyProduct": Transition(5045, 6084, 562, "Initialized", "Ready", "PrepareProduct"),
    "InitializedToReadyRecipe": Transition(5060, 6263, 561, "Initialized", "Ready", "PrepareRecipe"),
    "ReadyToContinuousExecution": Transition(5066, 6269, 681, "Ready", "ContinuousExecution", "StartContinuous"),
    "ReadyToContinuousExecutionAuto": Transition(5067, 6270, 680, "Ready", "ContinuousExecution", None),
    "ReadyToInitializedAuto": Transition(5063, 6266, 650, "Ready", "Initialized", None),
    "ReadyToInitializedProduct": Transition(5044, 6243, 652, "Ready", "Initialized", "UnprepareProduct"),
    "ReadyToInitializedRecipe": Transition(5062, 6265, 651, "Ready", "Initialized", "UnprepareRecipe"),
    "ReadyToSingleExecution": Transition(5064, 6267, 671, "Ready", "SingleExecution", "StartSingleJob"),
    "ReadyToSingleExecutionAuto": Transition(5065, 6268, 670, "Ready", "SingleExecution", None),
    "SingleExecutionToReadyAbort": Transition(5069, 6272, 762, "SingleExecution", "Ready", "Abort"),
    "SingleExecutionToReadyAuto": Transition(5070, 6273, 760, "SingleExecution", "Ready", None),
    "SingleExecutionToReadyStop": Transition(5068, 6271, 761, "SingleExecution", "Ready", "Stop"),
}

MANDATORY = "Mandatory"
OPTIONAL = "Optional"

# Methods as declared on the types (the instance's methods are instantiated from these),
# with their modelling rule. Only those Huoyan implements are declared.
METHODS = {
    "Halt": (7094, MANDATORY),
    "Reset": (7093, MANDATORY),
    "SelectModeAutomatic": (7095, OPTIONAL),
    "ConfirmAll": (7066, OPTIONAL),
    "StartSingleJob": (7098, MANDATORY),
    "StartContinuous": (7009, MANDATORY),
    "Stop": (7096, MANDATORY),
    "Abort": (7097, MANDATORY),
    "PrepareRecipe": (7015, MANDATORY),
    "UnprepareRecipe": (7055, MANDATORY),
    "GetRecipeListFiltered": (7014, MANDATORY),
    "PrepareProduct": (7060, OPTIONAL),
    "AddRecipe": (7013, OPTIONAL),
    "RemoveRecipe": (7057, OPTIONAL),
    "GetResultById": (7026, MANDATORY),
    "GetResultComponentsById": (7007, MANDATORY),
    "GetResultListFiltered": (7089, MANDATORY),
    "ReleaseResultHandle": (7090, OPTIONAL),
}

# Object instance declarations: (owner type, NodeId, browse name, type definition, rule);
# inner ones first, so that an outer declaration is instantiated with them.
OBJECT_DECLARATIONS = (
    (VISION_STATE_MACHINE_TYPE, 5024, "AutomaticModeStateMachine", VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE, OPTIONAL),
    (RESULT_MANAGEMENT_TYPE, 5245, "Results", RESULT_FOLDER_TYPE, OPTIONAL),
    (VISION_SYSTEM_TYPE, 5053, "VisionStateMachine", VISION_STATE_MACHINE_TYPE, MANDATORY),
    (VISION_SYSTEM_TYPE, 5015, "RecipeManagement", RECIPE_MANAGEMENT_TYPE, OPTIONAL),
    (VISION_SYSTEM_TYPE, 5020, "ResultManagement", RESULT_MANAGEMENT_TYPE, OPTIONAL),
)

# The fields of a result, in ResultDataType's order: (ResultType component, ResultReadyEventType
# property, data type, rule). A Mandatory component is a field the structure always has.
# Data types are this namespace's numbers, or ns=0 names.
RESULT_FIELDS: dict[str, tuple[int, int | None, int | str, str]] = {
    "ResultId": (6046, 6295, RESULT_ID, MANDATORY),
    "HasTransferableDataOnFile": (6047, None, "Boolean", OPTIONAL),
    "IsPartial": (6052, 6296, "Boolean", MANDATORY),
    "IsSimulated": (6053, 6297, "Boolean", OPTIONAL),
    "ResultState": (6054, 6298, RESULT_STATE, MANDATORY),
    "MeasId": (6055, 6299, MEAS_ID, OPTIONAL),
    "PartId": (6094, 6304, PART_ID, OPTIONAL),
    "ExternalRecipeId": (6095, 6301, RECIPE_ID_EXTERNAL, OPTIONAL),
    "InternalRecipeId": (6284, 6302, RECIPE_ID_INTERNAL, MANDATORY),
    "ProductId": (6327, 6143, PRODUCT_ID, OPTIONAL),
    "ExternalConfigurationId": (6328, 6045, CONFIGURATION_ID, OPTIONAL),
    "InternalConfigurationId": (6329, 6142, CONFIGURATION_ID, MANDATORY),
    "JobId": (6330, 6300, JOB_ID, MANDATORY),
    "CreationTime": (6331, 6303, "UtcTime", MANDATORY),
    "ProcessingTimes": (6332, 6305, PROCESSING_TIMES, OPTIONAL),
    "ResultContent": (6333, 6306, "BaseDataType", OPTIONAL),  # an array
}
JOB_ID_PROPERTIES = {JOB_STARTED_EVENT_TYPE: 6141, READY_EVENT_TYPE: 6294}
RECIPE_PREPARED_PROPERTIES = {"ExternalId": (6291, RECIPE_ID_EXTERNAL, OPTIONAL),
                              "InternalId": (6140, RECIPE_ID_INTERNAL, MANDATORY),
                              "ProductId": (6292, PRODUCT_ID, OPTIONAL)}  # fmt: skip


def node_id(identifier: int | str, ns: int = 0) -> ua.NodeId:
    """asyncua annotates NodeId with its own integer aliases; plain ints and strs are what it takes."""
    return ua.NodeId(identifier, ns)  # type: ignore[arg-type]


# Huoyan's own types, in its own namespace: the verdict, which OPC 40100 leaves to the
# application's result content.
HUOYAN_URI = "urn:huoyan:ua"
VERDICT_DATA_TYPE = 3001
INSPECTION_RESULT_DATA_TYPE = (3002, 5002)  # the structure and its binary encoding
VERDICTS = {"OK": 1, "NG": 2, "ERROR": 3}


def new_node_id(ns: int) -> ua.NodeId:
    """A NodeId for asyncua to number in namespace ``ns``."""
    return ua.NodeId(NamespaceIndex=ns)  # type: ignore[arg-type]
