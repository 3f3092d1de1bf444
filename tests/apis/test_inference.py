"""mmdet's and mmseg's inference APIs on a real photograph, with our configs and checkpoints.

Both after ``import mmlinattn`` and in a fresh interpreter that relies on the config's
``custom_imports`` alone.
"""
import json
import subprocess
import sys
import textwrap

import cv2
import pytest
import torch

import mmlinattn  # noqa: F401

PHOTO_SHAPE = (400, 600)  # skimage.data.coffee()


def check_detection(result, num_classes=3):
    from mmdet.structures import DetDataSample
    assert isinstance(result, DetDataSample)
    assert tuple(result.metainfo['ori_shape']) == PHOTO_SHAPE
    pred = result.pred_instances
    num = len(pred)
    assert num > 0
    assert pred.bboxes.shape == (num, 4) and pred.bboxes.dtype == torch.float32
    assert pred.scores.shape == (num, ) and pred.labels.shape == (num, )
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
    assert ((pred.labels >= 0) & (pred.labels < num_classes)).all()
    assert pred.masks.shape == (num, *PHOTO_SHAPE) and pred.masks.dtype == torch.bool
    boxes = pred.bboxes
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert (boxes[:, 2] <= PHOTO_SHAPE[1] + 1e-3).all() and (boxes[:, 3]
                                                             <= PHOTO_SHAPE[0] + 1e-3).all()


def check_segmentation(result, num_classes=4):
    from mmseg.structures import SegDataSample
    assert isinstance(result, SegDataSample)
    labels = result.pred_sem_seg.data
    assert labels.shape == (1, *PHOTO_SHAPE)
    assert ((labels >= 0) & (labels < num_classes)).all()
    assert result.seg_logits.data.shape == (num_classes, *PHOTO_SHAPE)


def test_detector_api(photograph, demo_checkpoints):
    from mmdet.apis import inference_detector, init_detector
    config, checkpoint = demo_checkpoints['det']
    model = init_detector(config, checkpoint, device='cpu')
    assert model.dataset_meta['classes'] == ['circle', 'square', 'triangle']
    check_detection(inference_detector(model, photograph))
    # an array in memory (BGR, as cv2.imread returns it)
    check_detection(inference_detector(model, cv2.imread(photograph)))


def test_segmentor_api(photograph, demo_checkpoints):
    from mmseg.apis import inference_model, init_model
    config, checkpoint = demo_checkpoints['seg']
    model = init_model(config, checkpoint, device='cpu')
    assert model.dataset_meta['classes'] == ['wall', 'building', 'sky', 'floor']
    check_segmentation(inference_model(model, photograph))
    check_segmentation(inference_model(model, cv2.imread(photograph)))


FRESH_INTERPRETER = textwrap.dedent('''
    import json, sys
    from mmdet.apis import inference_detector, init_detector
    from mmseg.apis import inference_model, init_model
    assert 'mmlinattn' not in sys.modules
    det_cfg, det_ckpt, seg_cfg, seg_ckpt, image = sys.argv[1:]
    det = inference_detector(init_detector(det_cfg, det_ckpt, device='cpu'), image)
    assert 'mmlinattn' in sys.modules          # imported by the config's custom_imports
    seg = inference_model(init_model(seg_cfg, seg_ckpt, device='cpu'), image)
    pred = det.pred_instances
    print(json.dumps(dict(
        bboxes=list(pred.bboxes.shape), scores=list(pred.scores.shape),
        labels=list(pred.labels.shape), masks=list(pred.masks.shape),
        sem_seg=list(seg.pred_sem_seg.data.shape),
        sem_seg_values=sorted(int(v) for v in seg.pred_sem_seg.data.unique()))))
''')


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_apis_with_custom_imports_only(photograph, demo_checkpoints, tmp_path):
    det_cfg, det_ckpt = demo_checkpoints['det']
    seg_cfg, seg_ckpt = demo_checkpoints['seg']
    proc = subprocess.run(
        [sys.executable, '-c', FRESH_INTERPRETER, det_cfg, det_ckpt, seg_cfg, seg_ckpt, photograph],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shapes = json.loads(proc.stdout.strip().splitlines()[-1])
    num = shapes['bboxes'][0]
    assert num > 0
    assert shapes['bboxes'] == [num, 4] and shapes['scores'] == shapes['labels'] == [num]
    assert shapes['masks'] == [num, *PHOTO_SHAPE]
    assert shapes['sem_seg'] == [1, *PHOTO_SHAPE]
    assert set(shapes['sem_seg_values']) <= {0, 1, 2, 3}
