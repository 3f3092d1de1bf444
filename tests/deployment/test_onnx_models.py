"""Whole models export up to their raw outputs and match PyTorch in ONNX Runtime: Semantic FPN
(logits), RetinaNet (head outputs) and Mask R-CNN (neck + RPN head outputs); UperNet through the
tool in test_export_tool.py."""
import os.path as osp

import pytest

from mmlinattn.deployment.onnx import build_model, export_spec
from mmlinattn.utils.run_config import load_config
from .conftest import RAVLT_TINY, SOFT_TINY, TOLERANCE, export_and_compare

CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
CASES = {
    # the demo config is small already (UperNet: tests/deployment/test_export_tool.py)
    'maskrcnn_ravlt_t_demo':
    ({}, [f'{g}{i}' for g in ('neck', 'rpn_cls_score', 'rpn_bbox_pred') for i in range(5)]),
    # Semantic FPN on SOFT++ with the config's pinv_mode 'shifted_inverse'
    'fpn_soft_t_ade20k': ({
        'model.backbone.arch': dict(_delete_=True, **SOFT_TINY),
        'model.backbone.max_landmarks': 12,
        'model.neck.in_channels': SOFT_TINY['embed_dims'],
        'model.neck.out_channels': 32,
        'model.decode_head.in_channels': [32] * 4,
        'model.decode_head.channels': 32,
    }, ['logits']),
    'retinanet_ravlt_t_coco': ({
        'model.backbone.arch': dict(_delete_=True, **RAVLT_TINY),
        'model.neck.in_channels': RAVLT_TINY['embed_dims'],
        'model.neck.out_channels': 32,
        'model.bbox_head.in_channels': 32,
        'model.bbox_head.feat_channels': 32,
    }, [f'{g}{i}' for g in ('cls_score', 'bbox_pred') for i in range(5)]),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_whole_model(name, onnx_path):
    options, names = CASES[name]
    cfg = load_config(osp.join(CONFIGS, f'{name}.py'), options)
    model, source = build_model(cfg)
    assert 'random weights (seed 0)' in source
    spec = export_spec(model, 'model')
    results, frozen = export_and_compare(spec, onnx_path)
    assert spec.output_names == names
    assert not frozen, frozen
    for result in results:
        assert result.max_normalised <= TOLERANCE, str(result)
