"""OPC UA server for one station, following OPC 40100-1 (Machine Vision).

Address space, under Objects: a ``VisionSystemType`` object named after the station with

- ``VisionStateMachine`` (Preoperational, Halted, Error, Operational; methods Halt,
  Reset, SelectModeAutomatic) and inside it ``AutomaticModeStateMachine`` (Initialized,
  Ready, SingleExecution, ContinuousExecution; StartSingleJob, StartContinuous, Stop, Abort);
- ``RecipeManagement`` with PrepareRecipe, UnprepareRecipe, PrepareProduct and
  GetRecipeListFiltered over the station's recipe table;
- ``ResultManagement`` with ``Results/LastResult`` (a ``ResultType`` variable whose
  value and components are each new result), GetResultById, GetResultComponentsById,
  GetResultListFiltered and ReleaseResultHandle over the recent results.

Each result fires a ``ResultReadyEventType`` event, and each state change a
``StateChangedEventType`` event, from the vision system; the Server object is its
notifier, so a client subscribed there receives them too. A result carries the part id,
the PLC's JobId and MeasId (from StartSingleJob, or from StartContinuous for every part
of a continuous job), the recipe (ExternalRecipeId: id, version, recipe sha256) and the
model (InternalConfigurationId: the artifact's sha256).

ResultState says whether the result is complete: 1 Completed for an OK or NG part, 4
Failed for an ERROR (the part could not be judged). The verdict is in the result content
(``ResultContent[0]``, an ``InspectionResultDataType`` of Huoyan's namespace; ``[1]`` is
the ``huoyan.result/1`` JSON message) and in ``LastResult/Verdict`` (``VerdictDataType``:
OK 1, NG 2, ERROR 3).

A lost camera, a database outage or a recipe whose model cannot be loaded moves the
vision system to Error, with the reason in ``ErrorReason`` and an ``ErrorEventType``
event; Reset recovers, and a fault that clears by itself (the camera or the database
back) returns it to Operational. A method called in a state that does not allow it
answers ``Bad_InvalidState`` and changes nothing; bad arguments answer
``Bad_InvalidArgument``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from asyncua import Node, Server, ua
from asyncua.common.instantiate_util import instantiate

from huoyan.core.control import LineControl, RecipeInfo, RecipeSwitchError
from huoyan.core.models import Verdict
from huoyan.core.recipe import OpcUaFeedback
from huoyan.core.records import InspectionRecord, Severity, StationEvent
from huoyan.io.feedback import SignalTimes
from huoyan.io.opcua import nodeids as ids
from huoyan.io.opcua.events import VisionEvents
from huoyan.io.opcua.results import HeldResults
from huoyan.io.opcua.security import configure_security
from huoyan.io.opcua.statemachine import AUTO, TOP, StateMachines
from huoyan.io.opcua.types import MachineVisionTypes, build_types, method_args, variant_type

log = logging.getLogger(__name__)

V = ua.VariantType
RESULT_STATES = {Verdict.OK: ids.RESULT_COMPLETED, Verdict.NG: ids.RESULT_COMPLETED, Verdict.ERROR: ids.RESULT_FAILED}
KEEP_RESULTS = 1000
# Station events that stop the vision system until they clear or the PLC resets it.
FAULTS = ("camera-disconnected", "database-unavailable")
EXECUTING = ("SingleExecution", "ContinuousExecution")


def _callers(table: dict[str, ids.Transition]) -> dict[str, set[str]]:
    """Each method and the states it may be called in: those its transitions leave."""
    out: dict[str, set[str]] = {}
    for transition in table.values():
        if transition.cause is not None:
            out.setdefault(transition.cause, set()).add(transition.from_state)
    return out


TOP_CALLS = _callers(ids.TOP_TRANSITIONS)
# A recipe may also be prepared again while Ready (the automatic mode stays Ready).
AUTO_CALLS = {
    name: states | ({"Ready"} if name in ("PrepareRecipe", "PrepareProduct") else set())
    for name, states in _callers(ids.AUTO_TRANSITIONS).items()
}
Handler = Callable[..., Awaitable[list[ua.Variant]]]


def bad(code: int) -> ua.UaStatusCodeError:
    return ua.UaStatusCodeError(code)


def ok() -> ua.Variant:
    return ua.Variant(0, V.Int32)


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
        self.prepared: RecipeInfo | None = control.active_recipe()
        self.results = HeldResults(KEEP_RESULTS)
        self._jobs = itertools.count(1)
        self._job = ""  # the job of the current execution
        self._meas = ""  # the MeasId StartContinuous gave, for every part of its job
        self._faults: set[str] = set()  # kinds of the active faults
        self.t: MachineVisionTypes | None = None

    @property
    def top(self) -> str:
        return self.sm.top

    @property
    def auto(self) -> str:
        return self.sm.auto

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
        await self.sm.start()
        await self._enter_top("Operational")  # PreoperationalToOperationalAuto once the model is loaded
        log.info("opcua: serving %s on %s", self.station, self.cfg.endpoint)

    async def _build(self, own: int) -> None:
        t = self.t
        assert t is not None
        sid = lambda path: ids.node_id(f"{self.station}.{path}", own)  # noqa: E731
        mv = lambda name: ua.QualifiedName(name, t.ns)  # noqa: E731
        hy = lambda name: ua.QualifiedName(name, t.huoyan_ns)  # noqa: E731
        self.system = await self.server.nodes.objects.add_object(
            sid("VisionSystem"), mv(self.station), t.nid(ids.VISION_SYSTEM_TYPE)
        )
        top_sm = await self.system.get_child(mv("VisionStateMachine"))
        auto_sm = await top_sm.get_child(mv("AutomaticModeStateMachine"))
        recipes = await self.system.get_child(mv("RecipeManagement"))
        results = await self.system.get_child(mv("ResultManagement"))
        folder = await results.get_child(mv("Results"))
        # asyncua warns that a VariableType has no access level to copy; it has none by design.
        quiet = logging.getLogger("asyncua.common.copy_node_util")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        try:
            made = await instantiate(
                folder, self.server.get_node(t.nid(ids.RESULT_TYPE)), sid("Results.LastResult"), mv("LastResult")
            )
        finally:
            quiet.setLevel(level)
        self.last = self.server.get_node(made[0])
        self.last_parts = {name: await self.last.get_child(mv(name)) for name in ids.RESULT_FIELDS}
        # Not in OPC 40100: the verdict, the reason for the Error state, and the lot of the
        # parts triggered from now on (written by the PLC or MES, kept until changed).
        self.verdict = await self.last.add_variable(
            sid("Results.LastResult.Verdict"), hy("Verdict"), ua.Variant(0, V.Int32),
            datatype=ids.node_id(ids.VERDICT_DATA_TYPE, t.huoyan_ns),
        )  # fmt: skip
        self.error_reason = await self.system.add_variable(
            sid("ErrorReason"), hy("ErrorReason"), ua.Variant("", V.String)
        )
        self.lot = await self.system.add_variable(sid("Lot"), ua.QualifiedName("Lot", own), ua.Variant("", V.String))
        await self.lot.set_writable()

        handlers: dict[str, tuple[Node, Handler]] = {
            "Halt": (top_sm, self._halt),
            "Reset": (top_sm, self._reset),
            "SelectModeAutomatic": (top_sm, self._select_automatic),
            "ConfirmAll": (top_sm, self._confirm_all),
            "StartSingleJob": (auto_sm, self._start_single),
            "StartContinuous": (auto_sm, self._start_continuous),
            "Stop": (auto_sm, self._stop),
            "Abort": (auto_sm, self._abort),
            "PrepareRecipe": (recipes, self._prepare_recipe),
            "UnprepareRecipe": (recipes, self._unprepare_recipe),
            "PrepareProduct": (recipes, self._prepare_product),
            "GetRecipeListFiltered": (recipes, self._recipe_list),
            "AddRecipe": (recipes, self._add_recipe),
            "RemoveRecipe": (recipes, self._remove_recipe),
            "GetResultById": (results, self._result_by_id),
            "GetResultComponentsById": (results, self._result_components),
            "GetResultListFiltered": (results, self._result_list),
            "ReleaseResultHandle": (results, self._release_results),
        }
        assert set(handlers) == set(method_args(t)), "every declared method has a handler"
        methods: dict[str, Node] = {}
        for name, (owner, handler) in handlers.items():
            methods[name] = await owner.get_child(mv(name))
            self.server.link_method(methods[name], self._guard(name, handler))
        self.events = VisionEvents(self.server, self.system)
        await self.events.start()
        self.sm = StateMachines(t, top_sm, auto_sm, self.events, methods, self._allowed)

    def _allowed(self, name: str) -> bool:
        if name in TOP_CALLS:
            return self.sm.top in TOP_CALLS[name]
        if name in AUTO_CALLS:
            return self.sm.top == "Operational" and self.sm.auto in AUTO_CALLS[name]
        return True

    def _guard(self, name: str, handler: Handler) -> Callable[..., Awaitable[list[ua.Variant] | ua.StatusCode]]:
        """State check and error containment: a refused call answers a Bad status (asyncua
        turns an exception into Bad_UnexpectedError), and nothing ever crashes the server."""

        async def call(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant] | ua.StatusCode:
            try:
                if not self._allowed(name):
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
    async def _enter_top(self, state: str, cause: str | None = None) -> None:
        if state != "Operational" and self.auto in EXECUTING:
            await self._enter_auto("Ready")  # a job ends when the vision system stops operating
        await self.sm.move(TOP, state, cause)
        if state != "Operational":
            self.control.pause()
            return
        await self._enter_auto("Ready" if self.prepared is not None else "Initialized")
        if self.auto == "Ready" and not self.control.triggerable:
            await self._start_job("ContinuousExecution", None, "")  # ReadyToContinuousExecutionAuto

    async def _enter_auto(self, state: str, cause: str | None = None) -> None:
        before = self.auto
        await self.sm.move(AUTO, state, cause)
        if before in EXECUTING and state == "Ready":
            assert self.t is not None
            job = self.t.new("JobIdDataType", Id=self._job)
            await self.events.fire(self.t.nid(ids.READY_EVENT_TYPE), {"JobId": job}, f"job {self._job} ended")

    async def _start_job(self, state: str, cause: str | None, meas: str) -> Any:
        """Enter Single or ContinuousExecution with a new JobId, and say so (JobStartedEventType)."""
        assert self.t is not None
        self._job = f"{self.station}-job-{next(self._jobs)}"
        self._meas = meas if state == "ContinuousExecution" else ""
        await self._enter_auto(state, cause)
        job = self.t.new("JobIdDataType", Id=self._job)
        await self.events.fire(self.t.nid(ids.JOB_STARTED_EVENT_TYPE), {"JobId": job}, f"job {self._job} started")
        self.control.resume()
        return job

    async def _enter_error(self, reason: str) -> None:
        """OperationalToErrorAuto or PreoperationalToErrorAuto, with the reason."""
        assert self.t is not None
        if self.top not in ("Operational", "Preoperational"):
            return
        await self.error_reason.write_value(ua.Variant(reason, V.String))
        await self._enter_top("Error")
        await self.events.fire(self.t.nid(ids.ERROR_EVENT_TYPE), self._transition_fields("Error"), reason)

    def _transition_fields(self, to: str) -> dict[str, Any]:
        assert self.t is not None
        return {"ToState": ua.LocalizedText(to), "ToState/Id": self.t.nid(ids.TOP_STATES[to][0])}

    # -- methods --------------------------------------------------------------------------
    async def _halt(self, cause: int = 0, why: str = "") -> list[ua.Variant]:
        await self._enter_top("Halted", "Halt")
        return [ok()]

    async def _reset(self, cause: int = 0, why: str = "") -> list[ua.Variant]:
        self._faults.clear()  # the PLC has taken note; a fault that is still there is reported again
        await self.error_reason.write_value(ua.Variant("", V.String))
        await self._enter_top("Preoperational", "Reset")
        return [ok()]

    async def _select_automatic(self) -> list[ua.Variant]:
        await self._enter_top("Operational", "SelectModeAutomatic")
        return [ok()]

    async def _confirm_all(self, comment: Any = None) -> list[ua.Variant]:
        """The operator at the line has seen the station's alarms: acknowledge them all in the records."""
        text = str(getattr(comment, "Text", None) or "")
        try:
            count = await self.control.acknowledge_alarms("opcua", text or "ConfirmAll from the line")
        except Exception as exc:  # the database is away (whatever its driver raises): nothing acknowledged
            log.error("opcua: ConfirmAll: %s", exc)
            raise bad(ua.StatusCodes.BadResourceUnavailable) from exc
        log.info("opcua: ConfirmAll acknowledged %d alarms", count)
        return []

    async def _start_single(self, meas: Any, part: Any, recipe: Any, product: Any, params: Any) -> list[ua.Variant]:
        if not self.control.triggerable:
            log.warning("opcua: StartSingleJob needs a triggered source; this station runs continuously")
            raise bad(ua.StatusCodes.BadNotSupported)
        self._check_recipe(recipe)
        job = await self._start_job("SingleExecution", "StartSingleJob", "")
        payload: dict[str, Any] = {"source": "opcua", "job_id": self._job}
        if _id_of(part):
            payload["part_id"] = _id_of(part)
        if _id_of(meas):
            payload["meas_id"] = _id_of(meas)
        lot = await self.lot.read_value()
        if lot:
            payload["lot"] = str(lot)
        self.control.trigger(payload)
        return [ua.Variant(job), ok()]

    async def _start_continuous(self, meas: Any, part: Any, recipe: Any, product: Any, params: Any) -> list[ua.Variant]:
        self._check_recipe(recipe)
        job = await self._start_job("ContinuousExecution", "StartContinuous", _id_of(meas))
        return [ua.Variant(job), ok()]

    async def _stop(self, cause: int = 0, why: str = "") -> list[ua.Variant]:
        return await self._end_job("Stop")

    async def _abort(self, cause: int = 0, why: str = "") -> list[ua.Variant]:
        return await self._end_job("Abort")

    async def _end_job(self, how: str) -> list[ua.Variant]:
        if not self.control.triggerable:
            self.control.pause()  # a running line stops taking parts; those taken are finished
        await self._enter_auto("Ready", how)
        return [ok()]

    def _check_recipe(self, recipe: Any) -> None:
        """A start naming a recipe other than the prepared one is refused (prepare it first)."""
        wanted = _id_of(recipe)
        if wanted and self.prepared is not None and wanted != self.prepared.recipe_id:
            raise bad(ua.StatusCodes.BadInvalidArgument)

    def _recipe_id(self, internal: bool, recipe_id: str, version: str, sha256: str | None = None) -> Any:
        """RecipeIdInternalDataType (``<id>:<version>``) or RecipeIdExternalDataType (the id),
        with the recipe file's sha256 when known."""
        assert self.t is not None
        return self.t.new(
            "RecipeIdInternalDataType" if internal else "RecipeIdExternalDataType",
            Id=f"{recipe_id}:{version}" if internal else recipe_id,
            Version=version,
            Hash=bytes.fromhex(sha256) if sha256 else None,
            HashAlgorithm="SHA-256" if sha256 else None,
        )

    def _internal_id(self, info: RecipeInfo) -> Any:
        return self._recipe_id(True, info.recipe_id, info.version, info.sha256)

    async def _switch(self, key: str, cause: str) -> RecipeInfo:
        known = any(key in (r.recipe_id, f"product:{r.product}") for r in self.control.recipes())
        if not known:
            log.error("opcua: no recipe %r in this station's table", key)
            raise bad(ua.StatusCodes.BadInvalidArgument)  # nothing changes
        try:
            info = await self.control.prepare_recipe(key)
        except RecipeSwitchError as exc:
            # A recipe of the table that cannot be run (its file or model is broken): the
            # station keeps its previous recipe, and the PLC must see that it is not ready.
            log.error("opcua: recipe %r not prepared: %s", key, exc)
            await self._enter_error(f"recipe {key} could not be prepared: {exc}")
            raise bad(ua.StatusCodes.BadConfigurationError) from exc
        self.prepared = info
        await self._enter_auto("Ready", cause)
        assert self.t is not None
        await self.events.fire(
            self.t.nid(ids.RECIPE_PREPARED_EVENT_TYPE),
            {
                "InternalId": self._internal_id(info),
                "ExternalId": self._recipe_id(False, info.recipe_id, info.version, info.sha256),
            },
            f"recipe {info.recipe_id} v{info.version} prepared",
        )
        return info

    async def _prepare_recipe(self, external: Any, internal: Any) -> list[ua.Variant]:
        key = _id_of(external) or _id_of(internal).split(":")[0]
        if not key:
            raise bad(ua.StatusCodes.BadInvalidArgument)
        info = await self._switch(key, "PrepareRecipe")
        return [ua.Variant(self._internal_id(info)), ua.Variant(True), ok()]

    async def _prepare_product(self, product: Any) -> list[ua.Variant]:
        if not _id_of(product):
            raise bad(ua.StatusCodes.BadInvalidArgument)
        info = await self._switch(f"product:{_id_of(product)}", "PrepareProduct")
        return [ua.Variant(self._internal_id(info)), ok()]

    async def _unprepare_recipe(self, external: Any, internal: Any) -> list[ua.Variant]:
        if self.prepared is None:
            raise bad(ua.StatusCodes.BadInvalidState)
        info = self.prepared
        self.prepared = None
        self.control.pause()
        await self._enter_auto("Initialized", "UnprepareRecipe")
        return [ua.Variant(self._internal_id(info)), ok()]

    async def _add_recipe(self, external: Any, product: Any) -> list[ua.Variant]:
        """A recipe file of ``feedback.recipe_dir`` joins the table (no transfer: the file is on the station)."""
        try:
            info = await self.control.add_recipe(_id_of(external))
        except LookupError as exc:
            log.error("opcua: AddRecipe: %s", exc)
            raise bad(ua.StatusCodes.BadNotFound) from exc
        except RecipeSwitchError as exc:
            log.error("opcua: AddRecipe: %s", exc)
            raise bad(ua.StatusCodes.BadInvalidArgument) from exc
        null = ua.Variant(ua.NodeId(), V.NodeId)  # Huoyan has no Recipes folder to point into
        return [ua.Variant(self._internal_id(info)), null, null, ua.Variant(False, V.Boolean), ok()]

    async def _remove_recipe(self, external: Any) -> list[ua.Variant]:
        if _id_of(external) == self.control.active_recipe().recipe_id:
            raise bad(ua.StatusCodes.BadInvalidState)  # prepare another recipe first
        try:
            await self.control.remove_recipe(_id_of(external))
        except LookupError as exc:
            raise bad(ua.StatusCodes.BadNotFound) from exc
        except RecipeSwitchError as exc:
            raise bad(ua.StatusCodes.BadInvalidArgument) from exc
        return [ok()]

    async def _recipe_list(
        self, external: Any, product: Any, prepared: int, max_results: int, start: int, timeout: int = 0
    ) -> list[ua.Variant]:
        def wanted(info: RecipeInfo) -> bool:
            is_prepared = self.prepared is not None and info.recipe_id == self.prepared.recipe_id
            return (
                (not _id_of(external) or _id_of(external) == info.recipe_id)
                and (not _id_of(product) or _id_of(product) == info.product)
                and (prepared == 2 or bool(prepared) == is_prepared)  # TriStateBoolean: 2 is DONTCARE
            )

        matching = [self._internal_id(r) for r in self.control.recipes() if wanted(r)]
        listed = matching[start : start + max_results] if max_results else matching[start:]
        return [
            ua.Variant(start + len(listed) >= len(matching)),
            ua.Variant(len(listed), V.UInt32),
            ua.Variant(0, V.UInt32),  # nothing is held for a recipe list: no handle to release
            ua.Variant(listed, V.ExtensionObject),
            ok(),
        ]

    def _found(self, result_id: Any) -> Any:
        found = self.results.get(_id_of(result_id))
        if found is None:
            raise bad(ua.StatusCodes.BadNotFound)
        return found

    async def _result_by_id(self, result_id: Any, timeout: int = 0) -> list[ua.Variant]:
        found = self._found(result_id)
        handle = self.results.hold([found.ResultId.Id])
        return [ua.Variant(handle, V.UInt32), ua.Variant(found), ok()]

    async def _result_components(self, result_id: Any, timeout: int = 0) -> list[ua.Variant]:
        r = self._found(result_id)
        handle = ua.Variant(self.results.hold([r.ResultId.Id]), V.UInt32)
        values = [_variant(name, getattr(r, name)) for name in ids.RESULT_FIELDS]
        return [values[1], handle, *values[2:], ok()]  # the fields but ResultId, the handle second

    async def _result_list(
        self,
        state: int,
        meas: Any,
        part: Any,
        external_recipe: Any,
        internal_recipe: Any,
        external_config: Any,
        internal_config: Any,
        product: Any,
        job: Any,
        max_results: int,
        start: int,
        timeout: int = 0,
    ) -> list[ua.Variant]:
        wanted = {
            "MeasId": _id_of(meas),
            "PartId": _id_of(part),
            "ExternalRecipeId": _id_of(external_recipe),
            "InternalRecipeId": _id_of(internal_recipe),
            "ExternalConfigurationId": _id_of(external_config),
            "InternalConfigurationId": _id_of(internal_config),
            "ProductId": _id_of(product),
            "JobId": _id_of(job),
        }
        filters = {name: value for name, value in wanted.items() if value}

        def match(r: Any) -> bool:
            if state and r.ResultState != state:
                return False
            return all(_id_of(getattr(r, name)) == value for name, value in filters.items())

        page, complete = self.results.page(match, start, max_results)
        handle = self.results.hold([r.ResultId.Id for r in page])
        return [
            ua.Variant(complete, V.Boolean),
            ua.Variant(len(page), V.UInt32),
            ua.Variant(handle, V.UInt32),
            ua.Variant(page, V.ExtensionObject),
            ok(),
        ]

    async def _release_results(self, handle: int) -> list[ua.Variant]:
        if not self.results.release(handle):
            raise bad(ua.StatusCodes.BadInvalidArgument)
        return [ok()]

    # -- results and events ------------------------------------------------------------------
    def _result_value(self, record: InspectionRecord, message: dict[str, Any]) -> dict[str, Any]:
        t = self.t
        assert t is not None
        trigger = record.trigger or {}
        info = self.control.active_recipe()
        continuous = self.auto == "ContinuousExecution"
        active_sha = info.sha256 if info.recipe_id == record.recipe_id else None
        model = record.model_sha256 or ""
        content = t.new(
            "InspectionResultDataType",
            Verdict=ids.VERDICTS[record.verdict.value],
            Score=_number(record.score),
            Threshold=_number(record.threshold),
            Regions=len(record.regions),
            RecordKey=record.key,
            Error=record.error or "",
        )
        fields: dict[str, Any] = {
            "ResultId": t.new("ResultIdDataType", Id=record.key),
            "IsPartial": False,
            "IsSimulated": False,
            "ResultState": RESULT_STATES[record.verdict],
            "PartId": t.new("PartIdDataType", Id=record.part_id or ""),
            "MeasId": t.new("MeasIdDataType", Id=str(trigger.get("meas_id") or (self._meas if continuous else ""))),
            "JobId": t.new("JobIdDataType", Id=str(trigger.get("job_id") or (self._job if continuous else ""))),
            "ExternalRecipeId": self._recipe_id(False, record.recipe_id, record.recipe_version, active_sha),
            "InternalRecipeId": self._recipe_id(True, record.recipe_id, record.recipe_version),
            "ProductId": t.new("ProductIdDataType", Id=info.product if info.recipe_id == record.recipe_id else ""),
            "InternalConfigurationId": t.new(
                "ConfigurationIdDataType",
                Id=model,
                Hash=bytes.fromhex(model) if model else None,
                HashAlgorithm="SHA-256 of the model artifact",
            ),
            "CreationTime": record.decided_at,
            "ProcessingTimes": t.new(
                "ProcessingTimesDataType",
                StartTime=record.arrived_at,
                EndTime=record.decided_at,
                ProcessingDuration=record.latency_ms,
            ),
            "ResultContent": [ua.Variant(content, V.ExtensionObject), ua.Variant(json.dumps(message), V.String)],
        }
        return fields

    async def _publish(self, record: InspectionRecord, message: dict[str, Any]) -> None:
        t = self.t
        assert t is not None
        fields = self._result_value(record, message)
        result = t.new("ResultDataType", **fields)
        self.results.add(record.key, result)
        # Straight into the address space (no write service, no checks): this runs per part.
        write = self.server.write_attribute_value
        for name, node in self.last_parts.items():
            if name in fields:
                await write(node.nodeid, ua.DataValue(_variant(name, fields[name])))
        await write(self.verdict.nodeid, ua.DataValue(ua.Variant(ids.VERDICTS[record.verdict.value], V.Int32)))
        await write(self.last.nodeid, ua.DataValue(ua.Variant(result)))
        await self.events.fire(
            t.nid(ids.RESULT_READY_EVENT_TYPE),
            fields,
            f"result {record.verdict.value} for part {record.part_id}",
        )
        self.times.signalled(self.name, record.key, record.part_id, record.decided_at)
        if self.auto == "SingleExecution" and (record.trigger or {}).get("source") == "opcua":
            await self._enter_auto("Ready")  # SingleExecutionToReadyAuto

    def result(self, record: InspectionRecord, message: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._publish(record, message))
        task.add_done_callback(_log_failure)

    def event(self, event: StationEvent, message: dict[str, Any]) -> None:
        # A lost camera or database stops the vision system: Error until it is back
        # (ErrorToOperationalAuto) or the PLC resets it.
        if event.kind not in FAULTS:
            return
        loop = asyncio.get_running_loop()
        if event.active and event.severity == Severity.ALARM:
            self._faults.add(event.kind)
            loop.create_task(self._enter_error(event.message)).add_done_callback(_log_failure)
        elif not event.active and event.kind in self._faults:
            self._faults.discard(event.kind)
            loop.create_task(self._resolved()).add_done_callback(_log_failure)

    async def _resolved(self) -> None:
        if self.top != "Error" or self._faults:
            return
        assert self.t is not None
        await self.error_reason.write_value(ua.Variant("", V.String))
        await self._enter_top("Operational")
        await self.events.fire(
            self.t.nid(ids.ERROR_RESOLVED_EVENT_TYPE), self._transition_fields("Operational"), "fault cleared"
        )

    async def stop(self) -> None:
        await self.server.stop()


def _variant(name: str, value: Any) -> ua.Variant:
    """A result field as a Variant of its type; an absent optional Boolean is false, an absent array empty."""
    kind = variant_type(ids.RESULT_FIELDS[name][2])
    if value is None and kind in (V.Boolean, V.Variant):
        value = False if kind == V.Boolean else []
    return ua.Variant(value, kind)


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("opcua: %s", task.exception(), exc_info=task.exception())


def _id_of(value: Any) -> str:
    """The ``Id`` of one of the specification's id structures; empty when absent."""
    return str(getattr(value, "Id", None) or "")
