"""The papers' numbers are found for the configs and backbones they belong to."""
import os.path as osp

from mmlinattn.analysis.reported import REPORTED_MODELS, reported_backbone, reported_model

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_every_reported_model_names_a_config():
    missing = [
        name for name in REPORTED_MODELS if not osp.isfile(osp.join(ROOT, 'configs', name + '.py'))
    ]
    assert not missing


def test_lookups():
    assert reported_backbone('RAVLT', 'tiny') == reported_backbone('RAVLT', 't')
    assert reported_backbone('RAVLT', 's')['flops_g'] == 4.6
    assert reported_backbone('SOFT', 'medium')['params_m'] == 45
    assert reported_backbone('RAVLT', dict(embed_dims=[8] * 4)) is None
    assert reported_model('maskrcnn_ravlt_t_coco') == dict(
        params_m=33, flops_g=219, shape=(800, 1280))
    assert reported_model('maskrcnn_soft_t_coco')['flops_g'] is None
    assert reported_model('maskrcnn_ravlt_t_demo') is None
