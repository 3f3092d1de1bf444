"""Shared settings of the deployment tests: tiny archs, the export size and two other sizes."""
import pytest
import torch

from mmlinattn.deployment.onnx import (ExportSpec, compare_outputs, create_session, export_onnx,
                                       run_onnxruntime, run_torch)

#: The same tiny archs as tests/models.
RAVLT_TINY = dict(embed_dims=[16, 32, 48, 64], depths=[1, 1, 1, 1], num_heads=[2, 2, 4, 4])
SOFT_TINY = dict(embed_dims=[16, 24, 32, 48], depths=[1, 1, 1, 1], num_heads=[2, 2, 2, 3])
#: Export size, and the sizes checked afterwards: another batch and a non-square size that is
#: not a multiple of 32, and a second non-square size.
EXPORT_SHAPE = (64, 64)
CHECK_SHAPES = ((2, 3, 122, 166), (1, 3, 160, 128))
TOLERANCE = 1e-4  # max-normalised, float32


def export_and_compare(spec: ExportSpec, path: str, shapes=CHECK_SHAPES, seed: int = 0):
    """Export ``spec`` with dynamic axes at :data:`EXPORT_SHAPE`, run ONNX Runtime at ``shapes``;
    returns (list of Comparison, tracer warnings from mmlinattn)."""
    frozen = export_onnx(spec, path, EXPORT_SHAPE, dynamic=True)
    session = create_session(path, threads=torch.get_num_threads())
    generator = torch.Generator().manual_seed(seed)
    results = []
    for shape in shapes:
        x = torch.randn(*shape, generator=generator)
        results.append(
            compare_outputs(
                run_torch(spec, x),
                run_onnxruntime(session, x),
                spec.output_names,
                label='x'.join(map(str, shape))))
    return results, frozen


@pytest.fixture
def onnx_path(tmp_path):
    return str(tmp_path / 'model.onnx')
