"""Draw a detector's or a segmentor's predictions on images: one PNG per image.

The config's ``default_scope`` decides the API: mmdet (``init_detector`` + ``inference_detector``,
drawn by ``DetLocalVisualizer``) or mmseg (``init_model`` + ``inference_model``, drawn by
``SegLocalVisualizer``). The paths of the written PNGs are printed, one per line. Examples::

    python tools/demo.py photo.jpg configs/maskrcnn_ravlt_t_demo.py work_dirs/det/iter_300.pth
    python tools/demo.py data/demo/ade/images/validation configs/upernet_ravlt_t_demo.py CKPT \\
        --out-dir vis --device cpu
"""
import argparse
import contextlib
import os
import os.path as osp
import sys
import warnings

# setuptools<81 is pinned on purpose (tools/setup_env.sh); its deprecation notice is noise here.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a source checkout

import mmlinattn  # noqa: E402,F401  (registers backbones, installs the safe checkpoint loader)
from mmlinattn.engine import compile_dense_modules  # noqa: E402
from mmlinattn.utils.run_config import load_config  # noqa: E402
from mmlinattn.utils.run_config import UserInputError, check_checkpoint, task_of

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('images', help='an image file, or a folder whose images are all drawn')
    parser.add_argument('config', help='config file, e.g. configs/maskrcnn_ravlt_t_demo.py')
    parser.add_argument('checkpoint', help='trained or converted checkpoint')
    parser.add_argument(
        '--out-dir',
        default='demo_outputs/predictions',
        help='where the PNGs go (default: demo_outputs/predictions)')
    parser.add_argument(
        '--device', default=None, help="'cpu' or 'cuda:0' (default: cuda:0 if available, else cpu)")
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='detection: draw instances scoring at least this (default: 0.3)')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the backbone, neck and decode heads (pays off for many images)')
    parser.add_argument(
        '--opacity',
        type=float,
        default=0.5,
        help='segmentation: opacity of the drawn mask (default: 0.5)')
    return parser.parse_args(argv)


def list_images(path: str) -> list:
    """The image files named by ``path`` (a file, or a folder's images, sorted)."""
    if osp.isfile(path):
        return [path]
    if osp.isdir(path):
        images = sorted(
            osp.join(path, name) for name in os.listdir(path)
            if name.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            raise UserInputError(f'folder {path!r} holds no image ({", ".join(IMAGE_SUFFIXES)})')
        return images
    raise UserInputError(f'image {path!r} does not exist')


def output_names(images: list, out_dir: str) -> list:
    """``<out_dir>/<stem>.png`` per image; a repeated stem keeps its extension (``a_jpg.png``)."""
    stems = [osp.splitext(osp.basename(image))[0] for image in images]
    names = []
    for image, stem in zip(images, stems):
        if stems.count(stem) > 1:
            stem = osp.basename(image).replace('.', '_')
        names.append(osp.join(out_dir, stem + '.png'))
    return names


def check_inputs(args):
    """Everything that can be wrong before a model is built, as a :class:`UserInputError`."""
    images = list_images(args.images)
    cfg = load_config(args.config)
    task = task_of(cfg)
    if not osp.isfile(args.checkpoint):
        raise UserInputError(f'checkpoint {args.checkpoint!r} does not exist; train one with '
                             f'tools/train.py {args.config} or convert one with '
                             'tools/convert_checkpoint.py')
    check_checkpoint(cfg, args.checkpoint, 'checkpoint', whole=True)
    import torch
    device = args.device or ('cuda:0' if torch.cuda.is_available() else 'cpu')
    if device.startswith('cuda') and not torch.cuda.is_available():
        raise UserInputError(f'--device {device}: CUDA is not available here; use --device cpu')
    return images, cfg, task, device


def _read_rgb(path: str):
    import mmcv
    try:
        image = mmcv.imread(path, channel_order='rgb')
    except Exception:  # noqa: BLE001  (unreadable files raise various errors)
        image = None
    if image is None:
        raise UserInputError(f'cannot read image {path!r} (not an image file?)')
    return image


def _library_output_to_stderr():
    """mmengine prints progress (e.g. 'Loads checkpoint ...') to stdout; stdout is for the paths."""
    return contextlib.redirect_stdout(sys.stderr)


def draw_detections(cfg, checkpoint, device, images, out_files, score_thr, compile=False):
    from mmdet.apis import inference_detector, init_detector
    from mmdet.registry import VISUALIZERS
    with _library_output_to_stderr():
        model = init_detector(cfg, checkpoint, device=device)
    if compile:
        compile_dense_modules(model)
    visualizer = VISUALIZERS.build(dict(type='DetLocalVisualizer', name='mmlinattn_demo_det'))
    visualizer.dataset_meta = model.dataset_meta
    for image, out_file in zip(images, out_files):
        rgb = _read_rgb(image)
        with _library_output_to_stderr():
            result = inference_detector(model, image)
            visualizer.add_datasample(
                osp.basename(image),
                rgb,
                result,
                draw_gt=False,
                show=False,
                pred_score_thr=score_thr,
                out_file=out_file)
        print(out_file, flush=True)


def draw_segmentations(cfg, checkpoint, device, images, out_files, opacity, compile=False):
    from mmseg.apis import inference_model, init_model
    from mmseg.registry import VISUALIZERS

    from mmlinattn.utils.cpu import revert_sync_batchnorm_if_no_cuda
    with _library_output_to_stderr():
        model = init_model(cfg, checkpoint, device=device)
        model = revert_sync_batchnorm_if_no_cuda(model)  # init_model keeps SyncBN
    if compile:
        compile_dense_modules(model)
    visualizer = VISUALIZERS.build(
        dict(type='SegLocalVisualizer', name='mmlinattn_demo_seg', alpha=opacity))
    visualizer.dataset_meta = dict(
        classes=model.dataset_meta['classes'], palette=model.dataset_meta['palette'])
    for image, out_file in zip(images, out_files):
        rgb = _read_rgb(image)
        with _library_output_to_stderr():
            result = inference_model(model, image)
            visualizer.add_datasample(
                osp.basename(image), rgb, result, draw_gt=False, show=False, out_file=out_file)
        print(out_file, flush=True)


def main(argv=None):
    args = parse_args(argv)
    try:
        images, cfg, task, device = check_inputs(args)
        out_files = output_names(images, args.out_dir)
        os.makedirs(args.out_dir, exist_ok=True)
        if task == 'mmdet':
            draw_detections(cfg, args.checkpoint, device, images, out_files, args.score_thr,
                            args.compile)
        else:
            draw_segmentations(cfg, args.checkpoint, device, images, out_files, args.opacity,
                               args.compile)
    except UserInputError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
