"""Train a detector (mmdet) or a segmentor (mmseg) whose backbone comes from mmlinattn.

The config's ``default_scope`` decides which codebase runs it. Examples::

    python tools/train.py configs/maskrcnn_ravlt_t_demo.py
    python tools/train.py configs/upernet_ravlt_t_demo.py --amp --work-dir work_dirs/seg
    python tools/train.py CONFIG --resume            # continue from the latest checkpoint in
    work_dir (with none there yet, it says so and starts anew)
    python tools/train.py CONFIG --cfg-options load_from=CONVERTED.pth   # fine-tune from weights
"""
import argparse
import os
import os.path as osp
import sys
import warnings

# setuptools<81 is pinned on purpose (tools/setup_env.sh); its deprecation notice is noise here.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a source checkout

from mmengine.config import DictAction  # noqa: E402

import mmlinattn  # noqa: E402,F401  (registers backbones, installs the safe checkpoint loader)
from mmlinattn.engine import compile_with_hook  # noqa: E402
from mmlinattn.utils.checkpoint import CheckpointError  # noqa: E402
from mmlinattn.utils.cpu import prepare_cpu_run  # noqa: E402
from mmlinattn.utils.run_config import check_checkpoint  # noqa: E402
from mmlinattn.utils.run_config import (UserInputError, build_model_on_meta, check_datasets,
                                        check_train_loop, load_config, resume_checkpoint, task_of)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file, e.g. configs/maskrcnn_ravlt_s_coco.py')
    parser.add_argument(
        '--work-dir', help='where logs and checkpoints go '
        '(default: work_dirs/<config name>)')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr', action='store_true', help='scale the lr by the actual total batch size')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        help='resume from the latest checkpoint in work_dir, or from the given file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_iters=100')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_cfg(args):
    cfg = load_config(args.config, args.cfg_options)
    task_of(cfg)
    check_train_loop(cfg)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper == 'OptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        elif wrapper != 'AmpOptimWrapper':
            raise UserInputError(f'--amp needs optim_wrapper.type OptimWrapper, not {wrapper!r}')
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise UserInputError(
                '--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume is not None:
        if args.resume != 'auto' and not osp.exists(args.resume):
            raise UserInputError(f'--resume: checkpoint {args.resume!r} does not exist')
        path = resume_checkpoint(cfg, args.resume)
        if path is None:
            # --resume in every launch of a job that may be pre-empted: the first one starts anew.
            start = (f'from load_from={cfg.load_from}' if cfg.get('load_from') else 'from scratch')
            print(
                f'--resume: {cfg.work_dir} holds no checkpoint yet (no last_checkpoint file), so '
                f'there is nothing to resume; training starts {start}',
                file=sys.stderr)
            cfg.resume = False
        else:
            cfg.resume, cfg.load_from = True, path
    checked = cfg.get('resume') or cfg.get('load_from')  # either one built the model on meta
    if not cfg.get('resume') and cfg.get('load_from'):
        check_checkpoint(cfg, cfg.load_from, 'load_from')
    needed = ['train_dataloader']
    if cfg.get('val_cfg') is not None:
        needed.append('val_dataloader')
    check_datasets(cfg, needed)
    if not checked:
        build_model_on_meta(cfg)  # a wrong model key is one line here, not a traceback later
    compile_with_hook(cfg)  # the dense modules, not mmengine's whole train_step
    return cfg


def main(argv=None):
    args = parse_args(argv)
    try:
        cfg = build_cfg(args)
    except UserInputError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    prepare_cpu_run(cfg)  # gloo instead of CUDA-only setup, bf16 AMP without loss scaling on CPU
    try:
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        runner.train()
    except CheckpointError as err:  # found only while loading (the checks above passed)
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
