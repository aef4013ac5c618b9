"""ONNX export of the token-dropping model and an onnxruntime runner (``toplib export``)."""
from .graph import DropGraph
from .runtime import (
    OPSETS,
    OrtModel,
    OrtOutput,
    export_onnx,
    ort_predict,
    quantize_int8,
    require,
)
