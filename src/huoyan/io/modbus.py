"""Modbus TCP server (pymodbus) with the trigger / result / acknowledge handshake of vision sensors.

The station owns the handshake state; the server's access hook copies it into every
read and takes every write, so the PLC always sees one consistent picture. Results are
held in order until the PLC acknowledges each one: a slow PLC reads them late but
never misses one. Addresses are 0-based (PLC tools often show coil 0 as 00001, input
register 0 as 30001, holding register 0 as 40001).

Coils (PLC writes)
    0 Trigger      set to 1 to take one part; the station clears it when it takes the trigger
    1 ResultAck    set to 1 after reading a result; the station clears it and shows the next one
    2 ErrorReset   set to 1 to clear TriggerError and a failed recipe switch
Discrete inputs (station writes)
    0 Ready        a trigger would be taken now
    1 Busy         a triggered part is being inspected, or a recipe is being switched
    2 ResultReady  a result is shown in OK/NG/Error and the input registers
    3 OK  4 NG  5 Error   the shown result's verdict (Error: the part could not be inspected)
    6 Alarm        the station has an active alarm (database, disk, camera, broker ...)
    7 TriggerError a trigger came while not Ready and was ignored (latched until ErrorReset)
Holding registers (PLC writes)
    0 RecipeRequest   recipe index to switch to (the station's recipe table); 0: no request
    1-2 PartNumber    part number for the next trigger (unsigned 32-bit, high word first); 0: none
    3-4 LotNumber     lot of the parts triggered from now on (unsigned 32-bit, high word first), kept
                      until changed and stored on each record as its lot; 0: none
Input registers (station writes)
    0 ResultCode      0 none, 1 OK, 2 NG, 3 ERROR
    1 ActiveRecipe    index of the recipe in use (0 if it is not in the table)
    2-3 ResultSeq     station sequence number of the shown result (unsigned 32-bit, high first)
    4 Score           normalised score x 1000 of the shown result (1000 = threshold), capped at 65535
    5 RegionCount     defect regions of the shown result
    6 PendingResults  results waiting for ResultAck, the shown one included
    7 RecipeStatus    0 ok, 1 switching, 2 unknown index, 3 switch failed
    8-9 ResultPart    the PartNumber the shown result was triggered with (0 if none)
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simutils import DataType

from huoyan.core.control import LineControl, RecipeSwitchError
from huoyan.core.models import Verdict
from huoyan.core.recipe import ModbusFeedback
from huoyan.core.records import InspectionRecord, Severity, StationEvent
from huoyan.io.feedback import SignalTimes

log = logging.getLogger(__name__)

# Coils
TRIGGER, RESULT_ACK, ERROR_RESET = 0, 1, 2
# Discrete inputs
READY, BUSY, RESULT_READY, OK, NG, ERROR, ALARM, TRIGGER_ERROR = range(8)
# Holding registers
RECIPE_REQUEST, PART_HI, PART_LO, LOT_HI, LOT_LO = 0, 1, 2, 3, 4
# Input registers
RESULT_CODE, ACTIVE_RECIPE, SEQ_HI, SEQ_LO, SCORE, REGION_COUNT, PENDING, RECIPE_STATUS, RPART_HI, RPART_LO = range(10)
RESULT_CODES = {Verdict.OK: 1, Verdict.NG: 2, Verdict.ERROR: 3}
N_BITS, N_REGS = 16, 16
FC_READ_COILS, FC_READ_DI, FC_READ_HR, FC_READ_IR = 1, 2, 3, 4
FC_WRITE_COILS, FC_WRITE_REGS = (5, 15), (6, 16)


@dataclass(slots=True)
class HeldResult:
    code: int
    seq: int
    score_milli: int
    regions: int
    part_number: int
    key: str
    part_id: str | None
    decided_at: datetime


@dataclass
class Handshake:
    """Everything the PLC can see or set, kept by the station."""

    coils: list[bool] = field(default_factory=lambda: [False] * N_BITS)
    holding: list[int] = field(default_factory=lambda: [0] * N_REGS)
    held: deque[HeldResult] = field(default_factory=deque)
    busy: bool = False
    switching: bool = False
    trigger_error: bool = False
    alarms: set[str] = field(default_factory=set)
    active_recipe: int = 0
    recipe_status: int = 0

    def ready(self, triggerable: bool) -> bool:
        return triggerable and not self.busy and not self.switching and self.recipe_status != 3

    def inputs(self, triggerable: bool) -> list[bool]:
        bits = [False] * N_BITS
        shown = self.held[0] if self.held else None
        bits[READY] = self.ready(triggerable)
        bits[BUSY] = self.busy or self.switching
        bits[RESULT_READY] = shown is not None
        bits[OK] = shown is not None and shown.code == 1
        bits[NG] = shown is not None and shown.code == 2
        bits[ERROR] = shown is not None and shown.code == 3
        bits[ALARM] = bool(self.alarms)
        bits[TRIGGER_ERROR] = self.trigger_error
        return bits

    def input_registers(self) -> list[int]:
        regs = [0] * N_REGS
        shown = self.held[0] if self.held else None
        if shown is not None:
            regs[RESULT_CODE] = shown.code
            regs[SEQ_HI], regs[SEQ_LO] = shown.seq >> 16 & 0xFFFF, shown.seq & 0xFFFF
            regs[SCORE] = shown.score_milli
            regs[REGION_COUNT] = min(shown.regions, 0xFFFF)
            regs[RPART_HI], regs[RPART_LO] = shown.part_number >> 16 & 0xFFFF, shown.part_number & 0xFFFF
        regs[ACTIVE_RECIPE] = self.active_recipe
        regs[PENDING] = min(len(self.held), 0xFFFF)
        regs[RECIPE_STATUS] = self.recipe_status
        return regs


def pack_bits(bits: list[bool], words: list[int]) -> None:
    """pymodbus keeps bit tables as 16-bit words, least significant bit first."""
    for w in range(len(words)):
        words[w] = sum(1 << b for b in range(16) if w * 16 + b < len(bits) and bits[w * 16 + b])


class ModbusChannel:
    name = "modbus"

    def __init__(
        self,
        cfg: ModbusFeedback,
        control: LineControl,
        times: SignalTimes,
    ) -> None:
        self.cfg = cfg
        self.control = control
        self.times = times
        self.state = Handshake(active_recipe=control.active_recipe().index)
        blocks = (
            [SimData(0, count=N_BITS, values=False, datatype=DataType.BITS)],
            [SimData(0, count=N_BITS, values=False, datatype=DataType.BITS)],
            [SimData(0, count=N_REGS, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=N_REGS, values=0, datatype=DataType.REGISTERS)],
        )
        self.device = SimDevice(id=cfg.device_id, simdata=blocks, action=self._access)
        self.server: ModbusTcpServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._switch: asyncio.Task[None] | None = None

    # -- the server's access hook --------------------------------------------------------
    async def _access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        s = self.state
        if set_values is not None:
            if function_code in FC_WRITE_COILS:
                for i, v in enumerate(set_values):
                    self._coil(address + i, bool(v))
                    set_values[i] = s.coils[address + i]  # type: ignore[call-overload]
            elif function_code in FC_WRITE_REGS:
                for i, v in enumerate(set_values):
                    self._holding(address + i, int(v))
            return None
        if function_code == FC_READ_COILS:
            pack_bits(s.coils, current_registers)
        elif function_code == FC_READ_DI:
            pack_bits(s.inputs(self.control.triggerable), current_registers)
        elif function_code == FC_READ_HR:
            current_registers[: len(s.holding)] = s.holding[: len(current_registers)]
        elif function_code == FC_READ_IR:
            regs = s.input_registers()
            current_registers[: len(regs)] = regs[: len(current_registers)]
        return None

    def _coil(self, address: int, value: bool) -> None:
        s = self.state
        rising = value and not s.coils[address]
        s.coils[address] = value
        if not rising:
            return
        if address == TRIGGER:
            s.coils[TRIGGER] = False  # self-clearing: the PLC sees the trigger was taken
            self._trigger()
        elif address == RESULT_ACK:
            s.coils[RESULT_ACK] = False
            if s.held:
                s.held.popleft()
                self._show_next()
        elif address == ERROR_RESET:
            s.coils[ERROR_RESET] = False
            s.trigger_error = False
            if s.recipe_status in (2, 3):
                s.recipe_status = 0

    def _holding(self, address: int, value: int) -> None:
        s = self.state
        s.holding[address] = value
        if address == RECIPE_REQUEST and value not in (0, s.active_recipe) and not s.switching:
            self._switch = asyncio.get_running_loop().create_task(self._prepare(value))

    def _trigger(self) -> None:
        s = self.state
        if not s.ready(self.control.triggerable):
            s.trigger_error = True
            log.warning("modbus: trigger ignored, station not ready")
            return
        part = (s.holding[PART_HI] << 16) | s.holding[PART_LO]
        payload: dict[str, Any] = {"source": "modbus", "part_number": part}
        if part:
            payload["part_id"] = str(part)
        lot = (s.holding[LOT_HI] << 16) | s.holding[LOT_LO]
        if lot:
            payload["lot"] = str(lot)
        s.busy = True
        self.control.trigger(payload)

    async def _prepare(self, index: int) -> None:
        s = self.state
        s.switching, s.recipe_status = True, 1
        try:
            info = await self.control.prepare_recipe(index)
        except RecipeSwitchError as exc:
            known = any(r.index == index for r in self.control.recipes())
            s.recipe_status = 3 if known else 2
            log.error("modbus: recipe %d not prepared: %s", index, exc)
        else:
            s.active_recipe, s.recipe_status = info.index, 0
        finally:
            s.switching = False

    def _show_next(self) -> None:
        """The oldest held result is on the outputs: from now on the PLC can read it."""
        if self.state.held:
            shown = self.state.held[0]
            self.times.signalled(self.name, shown.key, shown.part_id, shown.decided_at)

    # -- the station side ----------------------------------------------------------------
    async def start(self) -> None:
        self.server = ModbusTcpServer(self.device, address=(self.cfg.host, self.cfg.port))
        self._task = asyncio.get_running_loop().create_task(self.server.serve_forever())
        await self._listening()
        log.info("modbus: serving on %s:%d (device %d)", self.cfg.host, self.cfg.port, self.cfg.device_id)

    async def _listening(self, timeout: float = 10.0) -> None:
        """The line starts only once the PLC can connect."""
        host = "127.0.0.1" if self.cfg.host in ("0.0.0.0", "") else self.cfg.host
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                _, writer = await asyncio.open_connection(host, self.cfg.port)
            except OSError:
                if loop.time() > end or (self._task is not None and self._task.done()):
                    raise RuntimeError(f"modbus: cannot listen on {self.cfg.host}:{self.cfg.port}") from None
                await asyncio.sleep(0.02)
                continue
            writer.close()
            return

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.shutdown()
        if self._task is not None:
            self._task.cancel()

    def result(self, record: InspectionRecord, message: dict[str, Any]) -> None:
        s = self.state
        trigger = record.trigger or {}
        normalised = record.normalised_score or 0.0
        s.held.append(
            HeldResult(
                code=RESULT_CODES[record.verdict],
                seq=(record.seq or 0) & 0xFFFFFFFF,
                score_milli=max(0, min(0xFFFF, round(normalised * 1000))),
                regions=len(record.regions),
                part_number=int(trigger.get("part_number", 0)) & 0xFFFFFFFF,
                key=record.key,
                part_id=record.part_id,
                decided_at=record.decided_at,
            )
        )
        if trigger.get("source") == "modbus":
            s.busy = False
        if len(s.held) == 1:
            self._show_next()

    def event(self, event: StationEvent, message: dict[str, Any]) -> None:
        if event.severity == Severity.ALARM and event.active:
            self.state.alarms.add(event.kind)
        elif not event.active:
            self.state.alarms.discard(event.kind)
