"""An official mmdet-2.x RALA detector checkpoint, converted whole, loads into an mmdet-3.x
Mask R-CNN with every backbone weight (``init_detector`` reports no missing backbone key)."""
import os.path as osp
import re
import textwrap

import torch

import mmlinattn  # noqa: F401

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OFFICIAL = osp.join(ROOT, 'tests', 'data', 'official', 'ravlt_custom_det.pth')

# The fixture's architecture (tests/data/official/ravlt_custom.json); FPN width 8 as its neck.
CUSTOM_MASK_RCNN = textwrap.dedent('''
    _base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py',
              'mmdet::_base_/datasets/coco_instance.py']   # init_detector reads its pipeline
    custom_imports = dict(imports=['mmlinattn'], allow_failed_imports=False)
    default_scope = 'mmdet'
    embed_dims = [16, 32, 48, 64]
    model = dict(
        backbone=dict(_delete_=True, type='RAVLT',
                      arch=dict(embed_dims=embed_dims, depths=[2, 1, 2, 1], num_heads=[2, 2, 4, 4]),
                      init_cfg=dict(type='Pretrained', checkpoint='init_detector drops it')),
        neck=dict(in_channels=embed_dims, out_channels=8),
        rpn_head=dict(in_channels=8, feat_channels=8),
        roi_head=dict(
            bbox_roi_extractor=dict(out_channels=8),
            bbox_head=dict(in_channels=8, fc_out_channels=16),
            mask_roi_extractor=dict(out_channels=8),
            mask_head=dict(in_channels=8, conv_out_channels=8)))
''')


def _keys_after(label, log):
    """Keys mmengine lists after ``label`` in its state-dict mismatch message."""
    match = re.search(re.escape(label) + r'\s*(.*)', log)
    return [k.strip() for k in match.group(1).split(',')] if match else []


def test_converted_whole_model_loads_with_no_missing_backbone_key(tmp_path, capfd):
    converted = tmp_path / 'ravlt_custom_maskrcnn.pth'
    import importlib.util
    spec = importlib.util.spec_from_file_location('convert_checkpoint_tool',
                                                  osp.join(ROOT, 'tools', 'convert_checkpoint.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([OFFICIAL, str(converted), '--whole-model', '--allow-custom']) == 0
    out = capfd.readouterr().out
    assert 'variant: custom' in out
    assert '0 missing, 0 unexpected' in out
    saved = torch.load(converted, map_location='cpu', weights_only=True)
    assert saved['meta']['whole_model'] is True
    assert 'neck.lateral_convs.0.conv.weight' in saved['state_dict']  # neck kept

    config = tmp_path / 'maskrcnn_ravlt_custom.py'
    config.write_text(CUSTOM_MASK_RCNN)
    from mmdet.apis import init_detector
    capfd.readouterr()
    model = init_detector(str(config), str(converted), device='cpu')
    log = ''.join(capfd.readouterr())

    missing = _keys_after('missing keys in source state_dict:', log)
    unexpected = _keys_after('unexpected key in source state_dict:', log)
    assert missing, log  # the heads are not in the official file ...
    assert not [k for k in missing if k.startswith(('backbone.', 'neck.lateral_convs.0.'))]
    assert not unexpected, unexpected
    expected_missing = sorted(k for k in model.state_dict() if k not in saved['state_dict'])
    assert sorted(missing) == expected_missing  # ... and nothing else is missing
    for key, value in model.state_dict().items():
        if key in saved['state_dict']:
            assert torch.equal(value, saved['state_dict'][key]), key
