"""Deployment: ONNX export of the backbones and of the models built on them, ONNX Runtime
inference, verification against PyTorch and a speed comparison (:mod:`mmlinattn.deployment.onnx`).

Needs the ``deploy`` extra (``pip install -e .[deploy]``: onnx, onnxruntime, onnxscript,
scikit-image); importing this package does not import them.
"""
from .onnx import (DEFAULT_OPSET, PARTS, TOLERANCE, Comparison, ExportSpec, OrtBenchmark,
                   benchmark_backbone, build_model, compare_outputs, create_session, export_onnx,
                   export_spec, photograph, require_onnx, run_onnxruntime, run_torch, simplify_onnx,
                   verification_inputs, verify_onnx)

__all__ = [
    'DEFAULT_OPSET', 'PARTS', 'TOLERANCE', 'Comparison', 'ExportSpec', 'OrtBenchmark',
    'benchmark_backbone', 'build_model', 'compare_outputs', 'create_session', 'export_onnx',
    'export_spec', 'photograph', 'require_onnx', 'run_onnxruntime', 'run_torch', 'simplify_onnx',
    'verification_inputs', 'verify_onnx'
]
