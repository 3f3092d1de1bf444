"""The main job on the embedded default data: generate, train, evaluate, infer, draw.

Runs end to end on a CPU in minutes (``make demo``):

1. writes the generated COCO-style and ADE20K-style demo sets (``tools/make_demo_data.py``);
2. trains a small Mask R-CNN and a small UperNet with RAVLT backbones (``configs/*_demo.py``);
3. evaluates them (CocoMetric bbox/segm, IoUMetric mIoU);
4. runs ``mmdet.apis.inference_detector`` and ``mmseg.apis.inference_model`` on a validation image
   and saves the drawn predictions as PNG files, whose paths are printed at the end.

A summary with every metric is written to ``<out>/summary.json``.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys
import time
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# setuptools<81 is pinned on purpose (tools/setup_env.sh); its deprecation notice is noise here.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, ROOT)

import mmlinattn  # noqa: E402,F401
from mmlinattn.datasets.demo_data import make_ade_demo, make_coco_demo  # noqa: E402
from mmlinattn.utils.run_config import load_config  # noqa: E402

DET_CONFIG = osp.join(ROOT, 'configs', 'maskrcnn_ravlt_t_demo.py')
SEG_CONFIG = osp.join(ROOT, 'configs', 'upernet_ravlt_t_demo.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        '--data-root',
        default=osp.join(ROOT, 'data', 'demo'),
        help='where the generated data sets go')
    parser.add_argument(
        '--work-dir', default=osp.join(ROOT, 'work_dirs', 'demo'), help='logs and checkpoints')
    parser.add_argument(
        '--out', default=osp.join(ROOT, 'demo_outputs'), help='drawn predictions and summary.json')
    parser.add_argument(
        '--det-iters',
        type=int,
        default=None,
        help='training iterations for Mask R-CNN (default: the config)')
    parser.add_argument(
        '--seg-iters',
        type=int,
        default=None,
        help='training iterations for UperNet (default: the config)')
    parser.add_argument('--only', choices=['det', 'seg'], help='run one of the two jobs')
    return parser.parse_args(argv)


def train_and_test(config, data_root, work_dir, iters):
    """Train ``config`` on the demo data, evaluate the final weights, return (metrics, ckpt)."""
    from mmengine.runner import Runner
    options = {
        f'{split}_dataloader.dataset.data_root': data_root
        for split in ('train', 'val', 'test')
    }
    if iters is not None:
        options['train_cfg.max_iters'] = iters
        options['train_cfg.val_interval'] = iters
        options['default_hooks.checkpoint.interval'] = iters
    cfg = load_config(config, options)
    if iters is not None and cfg.get('param_scheduler'):
        for sched in cfg.param_scheduler:  # keep the schedule's shape for a shorter run
            if sched.get('type') != 'LinearLR' and 'end' in sched:
                sched.end = iters
    cfg.work_dir = work_dir
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    ckpt = osp.join(work_dir, f'iter_{runner.iter}.pth')
    return {k: float(v) for k, v in metrics.items()}, cfg, ckpt


def draw_detection(cfg, ckpt, image, out_file):
    import mmcv
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS
    model = init_detector(cfg, ckpt, device='cpu')
    result = inference_detector(model, image)
    visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name='mmlinattn_demo_det'))
    visualizer.dataset_meta = model.dataset_meta
    visualizer.add_datasample(
        'prediction',
        mmcv.imread(image, channel_order='rgb'),
        result,
        draw_gt=False,
        show=False,
        pred_score_thr=0.3,
        out_file=out_file)
    return int((result.pred_instances.scores > 0.3).sum())


def draw_segmentation(cfg, ckpt, image, out_file):
    import numpy as np
    from mmseg.apis import inference_model, init_model, show_result_pyplot
    model = init_model(cfg, ckpt, device='cpu')
    result = inference_model(model, image)
    show_result_pyplot(
        model, image, result, show=False, out_file=out_file, opacity=0.6, title='prediction')
    return sorted(int(c) for c in np.unique(result.pred_sem_seg.data.numpy()))


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    os.makedirs(args.out, exist_ok=True)
    summary = {}
    jobs = ['det', 'seg'] if args.only is None else [args.only]

    print(f'[demo] generating data under {args.data_root}', flush=True)
    coco = make_coco_demo(osp.join(args.data_root, 'coco'))
    ade = make_ade_demo(osp.join(args.data_root, 'ade'))

    if 'det' in jobs:
        print('[demo] training Mask R-CNN (RAVLT backbone) on the COCO-style demo set', flush=True)
        metrics, cfg, ckpt = train_and_test(DET_CONFIG,
                                            osp.join(args.data_root, 'coco') + '/',
                                            osp.join(args.work_dir, 'maskrcnn'), args.det_iters)
        image = sorted(glob.glob(osp.join(args.data_root, 'coco', 'val', '*.png')))[0]
        out_file = osp.join(args.out, 'maskrcnn_prediction.png')
        kept = draw_detection(cfg, ckpt, image, out_file)
        summary['det'] = dict(
            config=DET_CONFIG,
            checkpoint=ckpt,
            metrics=metrics,
            image=image,
            drawn=out_file,
            instances_above_0_3=kept,
            classes=list(coco['classes']))
    if 'seg' in jobs:
        print('[demo] training UperNet (RAVLT backbone) on the ADE20K-style demo set', flush=True)
        metrics, cfg, ckpt = train_and_test(SEG_CONFIG,
                                            osp.join(args.data_root, 'ade') + '/',
                                            osp.join(args.work_dir, 'upernet'), args.seg_iters)
        image = sorted(glob.glob(osp.join(args.data_root, 'ade', 'images', 'validation', '*')))[0]
        out_file = osp.join(args.out, 'upernet_prediction.png')
        labels = draw_segmentation(cfg, ckpt, image, out_file)
        summary['seg'] = dict(
            config=SEG_CONFIG,
            checkpoint=ckpt,
            metrics=metrics,
            image=image,
            drawn=out_file,
            predicted_labels=labels,
            classes=list(ade['classes']))

    summary['seconds'] = round(time.time() - start, 1)
    with open(osp.join(args.out, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print('\n[demo] results')
    for job in jobs:
        shown = {
            k: round(v, 4)
            for k, v in summary[job]['metrics'].items()
            if k.endswith(('bbox_mAP', 'segm_mAP', 'bbox_mAP_50', 'mIoU', 'aAcc', 'mAcc'))
        }
        print(f'  {job}: {shown}')
        print(f"  {job} prediction drawn to: {summary[job]['drawn']}")
    print(f"  summary: {osp.join(args.out, 'summary.json')}  ({summary['seconds']} s)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
