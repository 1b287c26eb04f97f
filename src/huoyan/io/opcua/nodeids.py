"""NodeIds of OPC 40100-1 (OPC UA for Machine Vision) that Huoyan's server uses.

Numbers are those of the companion specification's namespace
(``http://opcfoundation.org/UA/MachineVision``, NodeIds.csv of the OPC Foundation's
UA-Nodeset repository), so a generic client finds the types where it expects them.
The address space is built from these in code; no NodeSet XML is shipped.
"""

from __future__ import annotations

from asyncua import ua

NAMESPACE_URI = "http://opcfoundation.org/UA/MachineVision"

# Object types
VISION_SYSTEM_TYPE = 1003
RECIPE_MANAGEMENT_TYPE = 1004
RESULT_MANAGEMENT_TYPE = 1007
RESULT_FOLDER_TYPE = 1016
VISION_STATE_MACHINE_TYPE = 1017
VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE = 1021
RESULT_READY_EVENT_TYPE = 1024
RESULT_TYPE = 2002  # VariableType

# Data types
RECIPE_ID_EXTERNAL = 3002
PRODUCT_ID = 3003
PART_ID = 3004
PROCESSING_TIMES = 3005
RESULT_DATA = 3006
CONFIGURATION_ID = 3008
RESULT_STATE = 3009
RECIPE_ID_INTERNAL = 3013
MEAS_ID = 3015
JOB_ID = 3016
RESULT_ID = 3021

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

# Methods as declared on the types (the instance's methods reference these)
METHODS = {
    "Halt": 7094,
    "Reset": 7093,
    "SelectModeAutomatic": 7095,
    "StartSingleJob": 7098,
    "StartContinuous": 7009,
    "Stop": 7096,
    "Abort": 7097,
    "PrepareRecipe": 7015,
    "UnprepareRecipe": 7055,
    "PrepareProduct": 7060,
    "GetRecipeListFiltered": 7014,
    "GetResultById": 7026,
}


def node_id(identifier: int | str, ns: int = 0) -> ua.NodeId:
    """asyncua annotates NodeId with its own integer aliases; plain ints and strs are what it takes."""
    return ua.NodeId(identifier, ns)  # type: ignore[arg-type]
