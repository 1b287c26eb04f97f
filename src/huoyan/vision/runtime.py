"""Inference runtimes for the backbone, behind one call signature.

ONNX Runtime is the default: measured here it runs the truncated EfficientNet-Lite0
about 3x faster than eager torch with channels-last at batch 1 (see docs/benchmarks.md),
with outputs equal to 1e-4. The torch runtime stays for checking and for platforms
without ONNX Runtime. The ONNX graph is exported in memory from the same torch module,
so both runtimes always share one set of weights.

A model whose ``backbone_precision`` is ``bfloat16`` runs that same graph in OpenVINO with
bfloat16 arithmetic (``OpenVinoRuntime``): on CPUs with AVX-512 BF16 or AMX it is the one
runtime here with a fast bfloat16 path (1.6-1.7x ONNX Runtime's float32 on the backbone,
docs/benchmarks.md); a model fitted so is refused on CPUs without bfloat16 arithmetic.
"""

from __future__ import annotations

import functools
import io
import os
import threading
import warnings
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

RUNTIMES = ("onnx", "torch")
BACKBONE_PRECISIONS = ("float32", "bfloat16")


ONNX_OPSET = 17


def onnx_graph(module: nn.Module, example: torch.Tensor, outputs: list[str]) -> bytes:
    """``module`` as a serialised ONNX graph with one input ``image`` and ``outputs``, the
    batch axis dynamic: the backbone runtime's graph and the edge export's (``export``)."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns about its own deprecation; the graph is fine.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            buf,  # type: ignore[arg-type]
            input_names=["image"],
            output_names=outputs,
            dynamic_axes={name: {0: "batch"} for name in ["image", *outputs]},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return buf.getvalue()


def backbone_graph(model: nn.Module, image_size: int) -> tuple[bytes, int]:
    """The backbone as the ONNX graph every graph runtime runs, and how many maps it returns."""
    dummy = torch.zeros(1, 3, image_size, image_size)
    with torch.no_grad():
        count = len(model(dummy))
    return onnx_graph(model, dummy, [f"map{i}" for i in range(count)]), count


class FeatureRuntime(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        """NCHW float32 normalised input -> the averaged feature maps, finest first
        (each N x C x h x w float32; ``features.fuse`` makes patch features of them)."""
        ...


def cpu_threads() -> int:
    """The cores this process may use: ``OMP_NUM_THREADS`` where set (a Ray worker gets
    its share of a node this way), else the CPU affinity."""
    wanted = os.environ.get("OMP_NUM_THREADS", "")
    if wanted.isdigit() and int(wanted) > 0:
        return int(wanted)
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class TorchRuntime:
    name = "torch"

    def __init__(self, model: nn.Module) -> None:
        self.model = model.to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return [m.contiguous().numpy() for m in self.model(x)]


class OnnxRuntime:
    name = "onnx"

    def __init__(self, model: nn.Module, image_size: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        graph, _ = backbone_graph(model, image_size)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # ONNX Runtime's workers otherwise busy-wait after each run and steal the cores
        # from the nearest-neighbour search that follows (measured: 2x slower search).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        out: list[np.ndarray] = self.session.run(None, {"image": np.ascontiguousarray(batch)})
        return out


@functools.cache
def bfloat16_backbone_available() -> bool:
    """Whether OpenVINO is installed and computes in bfloat16 on this CPU."""
    try:
        import openvino as ov
    except ImportError:
        return False
    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def check_backbone_precision(precision: str) -> None:
    """Refuse, naming the parameter, a precision this host cannot run as the model was fitted."""
    if precision not in BACKBONE_PRECISIONS:
        raise ValueError(f"backbone_precision must be one of {BACKBONE_PRECISIONS}")
    if precision == "bfloat16" and not bfloat16_backbone_available():
        raise ValueError(
            "backbone_precision='bfloat16' needs OpenVINO (pip install 'huoyan[edge]') and a CPU with AVX-512 BF16 "
            "or AMX; in float32 the features would move by several percent and the scores with them: on this "
            "host fit with backbone_precision='float32'"
        )


class OpenVinoRuntime:
    """The backbone's ONNX graph compiled by OpenVINO, with ``precision`` arithmetic.

    ``bfloat16`` only where the CPU has it natively (AVX-512 BF16 or AMX): elsewhere
    OpenVINO would quietly compute in float32, and features 5-6% away from those the
    bank and threshold were made of would move a part's score by up to 11% of the
    threshold (sample-line washer), so such a host is refused.
    """

    def __init__(self, model: nn.Module, image_size: int, precision: str, threads: int | None = None) -> None:
        check_backbone_precision(precision)
        import openvino as ov

        graph, self.outputs = backbone_graph(model, image_size)
        core = ov.Core()
        wanted = "bf16" if precision == "bfloat16" else "f32"
        config: dict[str, Any] = {
            "INFERENCE_NUM_THREADS": threads or cpu_threads(),
            "INFERENCE_PRECISION_HINT": wanted,
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = core.compile_model(ov.convert_model(io.BytesIO(graph)), "CPU", config)
        self.name = f"openvino-{wanted}"
        # An infer request serves one call at a time; each thread that scores gets its own.
        self._local = threading.local()

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(batch)})
        return [np.array(request.get_output_tensor(i).data) for i in range(self.outputs)]


def make_runtime(kind: str, model: nn.Module, image_size: int, precision: str = "float32") -> FeatureRuntime:
    """``kind`` runs a float32 backbone; a bfloat16 one always runs in OpenVINO."""
    if precision != "float32":
        return OpenVinoRuntime(model, image_size, precision)
    if kind == "onnx":
        return OnnxRuntime(model, image_size)
    if kind == "torch":
        return TorchRuntime(model)
    raise ValueError(f"unknown runtime {kind!r}; choose one of {RUNTIMES}")
