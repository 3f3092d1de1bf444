"""The README's demo, end to end: the models must actually learn on the generated data (slow)."""
import json
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_demo(tmp_path, job):
    out = tmp_path / 'out'
    proc = subprocess.run([
        sys.executable, 'tools/run_demo.py', '--only', job, '--data-root',
        str(tmp_path / 'data'), '--work-dir',
        str(tmp_path / 'work'), '--out',
        str(out)
    ],
                          cwd=ROOT,
                          capture_output=True,
                          text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / 'summary.json').read_text())[job]
    assert osp.getsize(summary['drawn']) > 1000
    assert summary['drawn'] in proc.stdout
    return summary


@pytest.mark.slow
def test_demo_detection_learns(tmp_path):
    det = run_demo(tmp_path, 'det')['metrics']
    # Chance level for a detector is ~0 mAP (the demo reached 0.007-0.012 while the output
    # LayerNorms stalled it); measured 2026-11-21: bbox 0.680 (AP50 0.971), segm 0.792.
    assert det['coco/bbox_mAP_50'] > 0.6, det
    assert det['coco/bbox_mAP'] > 0.3, det
    assert det['coco/segm_mAP'] > 0.3, det


@pytest.mark.slow
def test_demo_segmentation_learns(tmp_path):
    summary = run_demo(tmp_path, 'seg')
    seg = summary['metrics']
    # Predicting the most frequent class everywhere gives mIoU <= 100 / 4 classes = 25.
    assert seg['mIoU'] > 40, seg
    assert len(summary['predicted_labels']) >= 3
