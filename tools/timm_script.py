"""Run one of timm's scripts (``train.py``, ``validate.py``, ``inference.py``, ...) with the
mmlinattn models registered.

timm's scripts build models by name through ``timm.create_model`` and have no option to import a
plugin, so ``--model ravlt_s`` would be unknown to them. This wrapper imports :mod:`mmlinattn`
(which registers ``ravlt_*``, ``RAVLT_*``, ``soft_*`` and ``soft_norm_*``) and then runs the script
as ``__main__`` with the remaining arguments. The scripts live in timm's repository, not in the pip
package: clone https://github.com/huggingface/pytorch-image-models at the installed version.

Examples::

    python tools/convert_checkpoint.py RAVLT_S.pth ravlt_s_timm.pth     # official -> our keys
    python tools/timm_script.py pytorch-image-models/validate.py --data-dir imagenet \\
        --model ravlt_s --checkpoint ravlt_s_timm.pth
    python tools/timm_script.py pytorch-image-models/train.py --data-dir data/demo/cls \\
        --model ravlt_t --num-classes 3 --initial-checkpoint ravlt_t_timm.pth -b 16 --epochs 5
"""
import os.path as osp
import runpy
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a source checkout

import mmlinattn  # noqa: E402,F401  (registers the timm models)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__)
        return 0 if argv else 2
    script = argv[0]
    if not osp.isfile(script):
        print(
            f'timm_script: error: {script} is not a file; give the path of a script of timm\'s '
            'repository (e.g. pytorch-image-models/train.py)',
            file=sys.stderr)
        return 2
    sys.argv = [script, *argv[1:]]
    sys.path.insert(0, osp.dirname(osp.abspath(script)))  # as `python script.py` would
    runpy.run_path(script, run_name='__main__')
    return 0


if __name__ == '__main__':
    sys.exit(main())
