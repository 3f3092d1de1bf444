"""Evaluate a trained detector (mmdet) or segmentor (mmseg) from mmlinattn.

Examples::

    python tools/test.py configs/maskrcnn_ravlt_t_demo.py
    work_dirs/maskrcnn_ravlt_t_demo/iter_300.pth
    python tools/test.py CONFIG CKPT --show-dir vis   # also save drawn predictions
    python tools/test.py CONFIG CKPT --compile        # torch.compile the dense modules
"""
import argparse
import os
import os.path as osp
import sys
import warnings

# setuptools<81 is pinned on purpose (tools/setup_env.sh); its deprecation notice is noise here.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import DictAction  # noqa: E402

import mmlinattn  # noqa: E402,F401
from mmlinattn.engine import compile_with_hook  # noqa: E402
from mmlinattn.utils.checkpoint import CheckpointError  # noqa: E402
from mmlinattn.utils.cpu import prepare_cpu_run  # noqa: E402
from mmlinattn.utils.run_config import check_checkpoint  # noqa: E402
from mmlinattn.utils.run_config import UserInputError, check_datasets, load_config, task_of


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file (ours, or converted with '
        'tools/convert_checkpoint.py)')
    parser.add_argument('--work-dir', help='where the evaluation log goes')
    parser.add_argument('--out', help='dump raw predictions to this .pkl file')
    parser.add_argument(
        '--show-dir',
        help='save drawn predictions (PNG) under SHOW_DIR inside the '
        'work dir; the folder is printed at the end')
    parser.add_argument('--amp', action='store_true', help='mixed-precision inference')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the backbone, neck and decode heads (the first images compile)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_cfg(args):
    if 'load_from' in (args.cfg_options or {}):
        raise UserInputError(
            f"--cfg-options load_from={args.cfg_options['load_from']} and the checkpoint "
            f'argument {args.checkpoint} both name the weights to evaluate; tools/test.py '
            'evaluates its checkpoint argument: drop load_from from --cfg-options')
    cfg = load_config(args.config, args.cfg_options)
    task = task_of(cfg)
    if not osp.exists(args.checkpoint):
        raise UserInputError(f'checkpoint {args.checkpoint!r} does not exist; train one with '
                             f'tools/train.py {args.config} or convert one with '
                             'tools/convert_checkpoint.py')
    if cfg.get('load_from') and osp.abspath(cfg.load_from) != osp.abspath(args.checkpoint):
        print(
            f'note: evaluating {args.checkpoint}; the config\'s load_from={cfg.load_from} (the '
            'starting point of its training) is not used',
            file=sys.stderr)
    check_checkpoint(cfg, args.checkpoint, 'checkpoint', whole=True)
    check_datasets(cfg, ['test_dataloader'])
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    # Testing never needs the training set (mmseg's visualization hook would otherwise build it
    # through runner.iter and fail where only the test data exists).
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
        cfg[key] = None
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.test_cfg = cfg.get('test_cfg') or dict(type='TestLoop')
        cfg.test_cfg.fp16 = True
    compile_with_hook(cfg, args.compile)  # mmengine itself compiles train_step only
    if args.show_dir:
        hook = _visualization_hook(cfg, task)
        if task == 'mmdet':
            hook.draw, hook.test_out_dir = True, args.show_dir
        else:
            hook.draw, hook.interval = True, 1
            cfg.visualizer.save_dir = osp.join(cfg.work_dir, args.show_dir)
            cfg.visualizer.vis_backends = [dict(type='LocalVisBackend')]
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise UserInputError('--out must end with .pkl')
        cfg.test_evaluator = [cfg.test_evaluator] if isinstance(cfg.test_evaluator, dict) \
            else list(cfg.test_evaluator)
        cfg.test_evaluator.append(dict(type='DumpResults', out_file_path=args.out))
    return cfg


def _visualization_hook(cfg, task: str):
    """The config's visualization hook, added with the task's default when the config has none."""
    hooks = cfg.setdefault('default_hooks', {})
    if hooks.get('visualization') is None:
        hooks['visualization'] = dict(
            type='DetVisualizationHook' if task == 'mmdet' else 'SegVisualizationHook')
    if cfg.get('visualizer') is None:
        cfg.visualizer = dict(
            type='DetLocalVisualizer' if task == 'mmdet' else 'SegLocalVisualizer',
            vis_backends=[dict(type='LocalVisBackend')],
            name='visualizer')
    return cfg.default_hooks.visualization


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = build_cfg(args)
    except UserInputError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner
    prepare_cpu_run(cfg)  # gloo instead of CUDA-only setup on a machine without CUDA
    try:
        runner = Runner.from_cfg(cfg)
        metrics = runner.test()
    except CheckpointError as err:  # found only while loading (the checks above passed)
        print(f'error: checkpoint {args.checkpoint}: {err}', file=sys.stderr)
        return 2
    if is_main_process():
        print({k: round(float(v), 4) for k, v in metrics.items()})
        if args.show_dir:
            drawn = (
                osp.join(runner.work_dir, runner.timestamp, args.show_dir) if task_of(cfg)
                == 'mmdet' else osp.join(cfg.work_dir, args.show_dir, 'vis_data', 'vis_image'))
            print(f'drawn predictions: {drawn}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
