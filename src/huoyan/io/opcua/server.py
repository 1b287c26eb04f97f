"""OPC UA server for one station, following OPC 40100-1 (Machine Vision).

Address space, under Objects: a ``VisionSystemType`` object named after the station with

- ``VisionStateMachine`` (Preoperational, Halted, Error, Operational; methods Halt,
  Reset, SelectModeAutomatic) and inside it ``AutomaticModeStateMachine`` (Initialized,
  Ready, SingleExecution, ContinuousExecution; StartSingleJob, StartContinuous, Stop, Abort);
- ``RecipeManagement`` with PrepareRecipe, UnprepareRecipe, PrepareProduct and
  GetRecipeListFiltered over the station's recipe table;
- ``ResultManagement`` with ``Results/LastResult`` (a ``ResultType`` variable whose
  value and components are each new result) and GetResultById over recent results.

Each result also fires a ``ResultReadyEventType`` event from the vision system. A
result carries the part id, the PLC's JobId and MeasId, the recipe (ExternalRecipeId:
id, version, recipe sha256) and the model (InternalConfigurationId: the artifact's
sha256). ResultState is 1 OK, 2 NG, 3 ERROR. ResultContent holds the full
``huoyan.result/1`` JSON message (scores, regions, threshold).

A method called in a state that does not allow it answers ``Bad_InvalidState`` and
changes nothing; bad arguments answer ``Bad_InvalidArgument``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua

from huoyan.core.control import LineControl, RecipeInfo, RecipeSwitchError
from huoyan.core.models import Verdict
from huoyan.core.recipe import OpcUaFeedback
from huoyan.core.records import InspectionRecord, Severity, StationEvent
from huoyan.io.feedback import SignalTimes
from huoyan.io.opcua import nodeids as ids
from huoyan.io.opcua.security import configure_security
from huoyan.io.opcua.types import MachineVisionTypes, build_types, method_args

log = logging.getLogger(__name__)

RESULT_STATES = {Verdict.OK: 1, Verdict.NG: 2, Verdict.ERROR: 3}
KEEP_RESULTS = 200

# method -> {from state: to state}; top-level methods look at the top state, the rest
# at the automatic mode's state (and need the top state Operational).
TOP_TRANSITIONS = {
    "Halt": {"Preoperational": "Halted", "Operational": "Halted", "Error": "Halted"},
    "Reset": {"Halted": "Preoperational", "Error": "Preoperational"},
    "SelectModeAutomatic": {"Preoperational": "Operational"},
}
AUTO_TRANSITIONS = {
    "StartSingleJob": {"Ready": "SingleExecution"},
    "StartContinuous": {"Ready": "ContinuousExecution"},
    "Stop": {"SingleExecution": "Ready", "ContinuousExecution": "Ready"},
    "Abort": {"SingleExecution": "Ready", "ContinuousExecution": "Ready"},
    "PrepareRecipe": {"Initialized": "Ready", "Ready": "Ready"},
    "PrepareProduct": {"Initialized": "Ready", "Ready": "Ready"},
    "UnprepareRecipe": {"Ready": "Initialized"},
}
Handler = Callable[..., Awaitable[list[ua.Variant]]]


def bad(code: int) -> ua.UaStatusCodeError:
    return ua.UaStatusCodeError(code)


class OpcUaChannel:
    name = "opcua"

    def __init__(
        self, cfg: OpcUaFeedback, station: str, control: LineControl, times: SignalTimes, data_dir: Path
    ) -> None:
        self.cfg = cfg
        self.station = station
        self.control = control
        self.times = times
        self.cert_dir = Path(cfg.certificate_dir or data_dir / "opcua")
        self.server = Server()
        self.top = "Preoperational"
        self.auto = "Initialized"
        self.prepared: RecipeInfo | None = control.active_recipe()
        self.results: OrderedDict[str, Any] = OrderedDict()
        self._jobs = itertools.count(1)
        self._job: str = ""
        self.t: MachineVisionTypes | None = None

    # -- building -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.server.init()
        self.server.set_endpoint(self.cfg.endpoint)
        self.server.set_server_name(f"Huoyan vision system {self.station}")
        await configure_security(self.server, self.cfg, self.cert_dir)
        self.t = await build_types(self.server)
        self.own = await self.server.register_namespace(f"urn:huoyan:station:{self.station}")
        await self._build(self.own)
        await self.server.start()
        await self._enter_top("Operational")  # PreoperationalToOperationalAuto once the model is loaded
        log.info("opcua: serving %s on %s", self.station, self.cfg.endpoint)

    async def _build(self, own: int) -> None:
        t = self.t
        assert t is not None
        sid = lambda path: ids.node_id(f"{self.station}.{path}", own)  # noqa: E731
        qn = lambda name: ua.QualifiedName(name, t.ns)  # noqa: E731
        objects = self.server.nodes.objects
        self.system = await objects.add_object(sid("VisionSystem"), qn(self.station), t.nid(ids.VISION_SYSTEM_TYPE))
        await self.system.write_attribute(
            ua.AttributeIds.EventNotifier, ua.DataValue(ua.Variant(1, ua.VariantType.Byte))
        )
        self.top_sm = await self.system.add_object(
            sid("VisionStateMachine"), qn("VisionStateMachine"), t.nid(ids.VISION_STATE_MACHINE_TYPE)
        )
        self.auto_sm = await self.top_sm.add_object(
            sid("AutomaticModeStateMachine"),
            qn("AutomaticModeStateMachine"),
            t.nid(ids.VISION_AUTOMATIC_MODE_STATE_MACHINE_TYPE),
        )
        recipes = await self.system.add_object(
            sid("RecipeManagement"), qn("RecipeManagement"), t.nid(ids.RECIPE_MANAGEMENT_TYPE)
        )
        results = await self.system.add_object(
            sid("ResultManagement"), qn("ResultManagement"), t.nid(ids.RESULT_MANAGEMENT_TYPE)
        )
        folder = await results.add_object(sid("Results"), qn("Results"), t.nid(ids.RESULT_FOLDER_TYPE))
        self.last = await folder.add_variable(
            sid("Results.LastResult"), qn("LastResult"), ua.Variant(None), datatype=t.nid(ids.RESULT_DATA)
        )
        self.last_parts: dict[str, Node] = {}
        for name, value, datatype in (
            ("ResultId", None, ids.RESULT_ID),
            ("PartId", None, ids.PART_ID),
            ("JobId", None, ids.JOB_ID),
            ("MeasId", None, ids.MEAS_ID),
            ("ExternalRecipeId", None, ids.RECIPE_ID_EXTERNAL),
            ("InternalRecipeId", None, ids.RECIPE_ID_INTERNAL),
            ("InternalConfigurationId", None, ids.CONFIGURATION_ID),
            ("ResultState", ua.Variant(0, ua.VariantType.Int32), ids.RESULT_STATE),
            ("IsPartial", ua.Variant(False, ua.VariantType.Boolean), None),
            ("CreationTime", ua.Variant(None, ua.VariantType.DateTime), None),
            ("ResultContent", ua.Variant([], ua.VariantType.String), None),
        ):
            self.last_parts[name] = await self.last.add_variable(
                sid(f"Results.LastResult.{name}"),
                qn(name),
                value if value is not None else ua.Variant(None),
                datatype=t.nid(datatype) if datatype else None,
            )
        args = method_args(t)
        handlers: dict[str, tuple[Node, Handler]] = {
            "Halt": (self.top_sm, self._halt),
            "Reset": (self.top_sm, self._reset),
            "SelectModeAutomatic": (self.top_sm, self._select_automatic),
            "StartSingleJob": (self.auto_sm, self._start_single),
            "StartContinuous": (self.auto_sm, self._start_continuous),
            "Stop": (self.auto_sm, self._stop),
            "Abort": (self.auto_sm, self._stop),
            "PrepareRecipe": (recipes, self._prepare_recipe),
            "UnprepareRecipe": (recipes, self._unprepare_recipe),
            "PrepareProduct": (recipes, self._prepare_product),
            "GetRecipeListFiltered": (recipes, self._recipe_list),
            "GetResultById": (results, self._result_by_id),
        }
        for name, (owner, handler) in handlers.items():
            inputs, outputs = args[name]
            await owner.add_method(sid(name), qn(name), self._guard(name, handler), inputs, outputs)
        # Not in OPC 40100: the lot of the parts triggered from now on, written by the PLC or
        # MES and kept until changed; each record stores it (charts and reports per lot).
        self.lot = await self.system.add_variable(
            sid("Lot"), ua.QualifiedName("Lot", own), ua.Variant("", ua.VariantType.String)
        )
        await self.lot.set_writable()
        self.ready_event = await self.server.get_event_generator(t.nid(ids.RESULT_READY_EVENT_TYPE), self.system.nodeid)
        await self._write_state(self.top_sm, "Preoperational", ids.TOP_STATES)
        await self._write_state(self.auto_sm, "Initialized", ids.AUTO_STATES)

    def _guard(self, name: str, handler: Handler) -> Callable[..., Awaitable[list[ua.Variant] | ua.StatusCode]]:
        """State check and error containment: a refused call answers a Bad status (asyncua
        turns an exception into Bad_UnexpectedError), and nothing ever crashes the server."""

        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant] | ua.StatusCode:
            try:
                if name in TOP_TRANSITIONS:
                    if self.top not in TOP_TRANSITIONS[name]:
                        raise bad(ua.StatusCodes.BadInvalidState)
                elif name in AUTO_TRANSITIONS and (
                    self.top != "Operational" or self.auto not in AUTO_TRANSITIONS[name]
                ):
                    raise bad(ua.StatusCodes.BadInvalidState)
                try:
                    return await handler(*[a.Value if isinstance(a, ua.Variant) else a for a in args])
                except (TypeError, ValueError, AttributeError) as exc:
                    log.warning("opcua: %s called with bad arguments: %s", name, exc)
                    raise bad(ua.StatusCodes.BadInvalidArgument) from exc
            except ua.UaStatusCodeError as exc:
                log.info("opcua: %s refused in %s/%s: %s", name, self.top, self.auto, type(exc).__name__)
                return ua.StatusCode(exc.code)

        return call

    # -- states ---------------------------------------------------------------------------
    async def _write_state(self, machine: Node, state: str, table: dict[str, tuple[int, int, int]]) -> None:
        assert self.t is not None
        node_number, _, number = table[state]
        current = await machine.get_child(ua.QualifiedName("CurrentState", 0))
        await current.write_value(ua.Variant(ua.LocalizedText(state), ua.VariantType.LocalizedText))
        state_id = await current.get_child(ua.QualifiedName("Id", 0))
        await state_id.write_value(ua.Variant(self.t.nid(node_number), ua.VariantType.NodeId))
        try:
            state_number = await current.get_child(ua.QualifiedName("Number", 0))
        except ua.UaError:
            state_number = await current.add_property(
                ids.node_id(f"{self.station}.{table is ids.TOP_STATES}.CurrentState.Number", self.own),
                ua.QualifiedName("Number", 0),
                ua.Variant(number, ua.VariantType.UInt32),
            )
        await state_number.write_value(ua.Variant(number, ua.VariantType.UInt32))

    async def _enter_top(self, state: str) -> None:
        log.info("opcua: %s -> %s", self.top, state)
        self.top = state
        await self._write_state(self.top_sm, state, ids.TOP_STATES)
        if state == "Operational":
            await self._enter_auto("Ready" if self.prepared is not None else "Initialized")
            if self.auto == "Ready" and not self.control.triggerable:
                await self._enter_auto("ContinuousExecution")  # ReadyToContinuousExecutionAuto
                self.control.resume()
        else:
            self.control.pause()

    async def _enter_auto(self, state: str) -> None:
        if state != self.auto:
            log.info("opcua: automatic mode %s -> %s", self.auto, state)
        self.auto = state
        await self._write_state(self.auto_sm, state, ids.AUTO_STATES)

    # -- methods --------------------------------------------------------------------------
    async def _halt(self, cause: int = 0, why: str = "") -> list[ua.Variant]:
        await self._enter_top("Halted")
        return [ua.Variant(0, ua.VariantType.Int32)]

    async def _reset(self, cause: int = 0, why: str = "") -> list[ua.Variant]:
        await self._enter_top("Preoperational")
        return [ua.Variant(0, ua.VariantType.Int32)]

    async def _select_automatic(self) -> list[ua.Variant]:
        await self._enter_top("Operational")
        return [ua.Variant(0, ua.VariantType.Int32)]

    def _new_job(self) -> Any:
        assert self.t is not None
        self._job = f"{self.station}-job-{next(self._jobs)}"
        return self.t.new("JobIdDataType", Id=self._job)

    async def _start_single(self, meas: Any, part: Any, recipe: Any, product: Any, params: Any) -> list[ua.Variant]:
        if not self.control.triggerable:
            log.warning("opcua: StartSingleJob needs a triggered source; this station runs continuously")
            raise bad(ua.StatusCodes.BadNotSupported)
        await self._check_recipe(recipe)
        job = self._new_job()
        payload: dict[str, Any] = {"source": "opcua", "job_id": self._job}
        if _id_of(part):
            payload["part_id"] = _id_of(part)
        if _id_of(meas):
            payload["meas_id"] = _id_of(meas)
        lot = await self.lot.read_value()
        if lot:
            payload["lot"] = str(lot)
        await self._enter_auto("SingleExecution")
        self.control.resume()
        self.control.trigger(payload)
        return [ua.Variant(job), ua.Variant(0, ua.VariantType.Int32)]

    async def _start_continuous(self, meas: Any, part: Any, recipe: Any, product: Any, params: Any) -> list[ua.Variant]:
        await self._check_recipe(recipe)
        job = self._new_job()
        await self._enter_auto("ContinuousExecution")
        self.control.resume()
        return [ua.Variant(job), ua.Variant(0, ua.VariantType.Int32)]

    async def _stop(self, cause: int = 0, why: str = "") -> list[ua.Variant]:
        if not self.control.triggerable:
            self.control.pause()  # a running line stops taking parts; those taken are finished
        await self._enter_auto("Ready")
        return [ua.Variant(0, ua.VariantType.Int32)]

    async def _check_recipe(self, recipe: Any) -> None:
        """A start naming a recipe other than the prepared one is refused (prepare it first)."""
        wanted = _id_of(recipe)
        if wanted and self.prepared is not None and wanted != self.prepared.recipe_id:
            raise bad(ua.StatusCodes.BadInvalidArgument)

    def _internal_id(self, info: RecipeInfo) -> Any:
        assert self.t is not None
        return self.t.new(
            "RecipeIdInternalDataType",
            Id=f"{info.recipe_id}:{info.version}",
            Version=info.version,
            Hash=bytes.fromhex(info.sha256),
            HashAlgorithm="SHA-256",
        )

    async def _switch(self, key: str | int) -> RecipeInfo:
        try:
            info = await self.control.prepare_recipe(key)
        except RecipeSwitchError as exc:
            log.error("opcua: recipe %r not prepared: %s", key, exc)
            raise bad(ua.StatusCodes.BadInvalidArgument) from exc
        self.prepared = info
        await self._enter_auto("Ready")
        return info

    async def _prepare_recipe(self, external: Any, internal: Any) -> list[ua.Variant]:
        key = _id_of(external) or _id_of(internal).split(":")[0]
        if not key:
            raise bad(ua.StatusCodes.BadInvalidArgument)
        info = await self._switch(key)
        return [ua.Variant(self._internal_id(info)), ua.Variant(True), ua.Variant(0, ua.VariantType.Int32)]

    async def _prepare_product(self, product: Any) -> list[ua.Variant]:
        if not _id_of(product):
            raise bad(ua.StatusCodes.BadInvalidArgument)
        info = await self._switch(f"product:{_id_of(product)}")
        return [ua.Variant(self._internal_id(info)), ua.Variant(0, ua.VariantType.Int32)]

    async def _unprepare_recipe(self, external: Any, internal: Any) -> list[ua.Variant]:
        if self.prepared is None:
            raise bad(ua.StatusCodes.BadInvalidState)
        info = self.prepared
        self.prepared = None
        self.control.pause()
        await self._enter_auto("Initialized")
        return [ua.Variant(self._internal_id(info)), ua.Variant(0, ua.VariantType.Int32)]

    async def _recipe_list(self, *args: Any) -> list[ua.Variant]:
        listed = [self._internal_id(r) for r in self.control.recipes()]
        return [
            ua.Variant(True),
            ua.Variant(len(listed), ua.VariantType.UInt32),
            ua.Variant(0, ua.VariantType.UInt32),
            ua.Variant(listed),
            ua.Variant(0, ua.VariantType.Int32),
        ]

    async def _result_by_id(self, result_id: Any, timeout: int = 0) -> list[ua.Variant]:
        found = self.results.get(_id_of(result_id))
        if found is None:
            raise bad(ua.StatusCodes.BadNotFound)
        return [ua.Variant(0, ua.VariantType.UInt32), ua.Variant(found), ua.Variant(0, ua.VariantType.Int32)]

    # -- results and events ------------------------------------------------------------------
    def _result_value(self, record: InspectionRecord, message: dict[str, Any]) -> dict[str, Any]:
        t = self.t
        assert t is not None
        trigger = record.trigger or {}
        info = self.control.active_recipe()
        return {
            "ResultId": t.new("ResultIdDataType", Id=record.key),
            "IsPartial": False,
            "ResultState": RESULT_STATES[record.verdict],
            "PartId": t.new("PartIdDataType", Id=record.part_id or ""),
            "MeasId": t.new("MeasIdDataType", Id=str(trigger.get("meas_id", ""))),
            "JobId": t.new("JobIdDataType", Id=str(trigger.get("job_id", ""))),
            "ExternalRecipeId": t.new(
                "RecipeIdExternalDataType",
                Id=record.recipe_id,
                Version=record.recipe_version,
                Hash=bytes.fromhex(info.sha256) if info.recipe_id == record.recipe_id else None,
                HashAlgorithm="SHA-256",
            ),
            "InternalRecipeId": t.new(
                "RecipeIdInternalDataType",
                Id=f"{record.recipe_id}:{record.recipe_version}",
                Version=record.recipe_version,
            ),
            "InternalConfigurationId": t.new(
                "ConfigurationIdDataType",
                Id=record.model_sha256 or "",
                HashAlgorithm="SHA-256 of the model artifact",
            ),
            "CreationTime": record.decided_at,
            "ResultContent": [json.dumps(message)],
        }

    async def _publish(self, record: InspectionRecord, message: dict[str, Any]) -> None:
        t = self.t
        assert t is not None
        fields = self._result_value(record, message)
        content = fields["ResultContent"]
        result = t.new(
            "ResultDataType", **{**fields, "ResultContent": [ua.Variant(c, ua.VariantType.String) for c in content]}
        )
        self.results[record.key] = result
        while len(self.results) > KEEP_RESULTS:
            self.results.popitem(last=False)
        for name, node in self.last_parts.items():
            value = fields[name]
            if name == "ResultState":
                value = ua.Variant(value, ua.VariantType.Int32)
            elif name == "ResultContent":
                value = ua.Variant(content, ua.VariantType.String)
            await node.write_value(value)
        await self.last.write_value(ua.Variant(result))
        self.times.signalled(self.name, record.key, record.part_id, record.decided_at)
        ev = self.ready_event.event
        for name in ("ResultId", "IsPartial", "PartId", "MeasId", "JobId", "ExternalRecipeId", "InternalRecipeId"):
            setattr(ev, name, fields[name])
        ev.ResultState = ua.Variant(fields["ResultState"], ua.VariantType.Int32)
        ev.CreationTime = fields["CreationTime"]
        ev.ResultContent = content
        await self.ready_event.trigger(message=f"result {record.verdict.value} for part {record.part_id}")
        if self.auto == "SingleExecution" and (record.trigger or {}).get("source") == "opcua":
            await self._enter_auto("Ready")  # SingleExecutionToReadyAuto

    def result(self, record: InspectionRecord, message: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._publish(record, message))
        task.add_done_callback(_log_failure)

    def event(self, event: StationEvent, message: dict[str, Any]) -> None:
        # A lost camera stops the vision system: Error until it is back (ErrorToOperationalAuto).
        if event.kind != "camera-disconnected":
            return
        loop = asyncio.get_running_loop()
        if event.active and event.severity == Severity.ALARM and self.top == "Operational":
            loop.create_task(self._enter_top("Error")).add_done_callback(_log_failure)
        elif not event.active and self.top == "Error":
            loop.create_task(self._enter_top("Operational")).add_done_callback(_log_failure)

    async def stop(self) -> None:
        await self.server.stop()


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("opcua: %s", task.exception(), exc_info=task.exception())


def _id_of(value: Any) -> str:
    """The ``Id`` of one of the specification's id structures; empty when absent."""
    return str(getattr(value, "Id", None) or "")
