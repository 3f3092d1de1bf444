"""Every shell command in the README's ```bash blocks is accounted for, and runs as printed.

Each command line must appear in :data:`COMMANDS` with how it is checked:

* ``'fails_without_data'`` - needs data this machine cannot have (COCO, official weights): run
  exactly as printed (in a scratch copy of the repository), it must stop in one line, exit 2,
  naming what is missing - which also proves its flags and ``--cfg-options`` are right;
* ``'slow'`` - run exactly as printed, in README order, by ``test_readme_runs_as_printed`` (marked
  slow: it trains for a minute), after ``python tools/make_demo_data.py``;
* ``'parses'`` - a full benchmark sweep (an hour): its arguments are parsed as printed;
* ``('covered', path)`` - run by another test or by CI (the file must exist).

A new README command fails :func:`test_every_command_is_accounted_for` until it is added here.
"""
import importlib.util
import os
import os.path as osp
import re
import shlex
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

COMMANDS = {
    'make demo': ('covered', 'tests/test_demo_e2e.py'),
    'make test': ('covered', '.ci/run'),
    'python tools/convert_checkpoint.py RAVLT_S.pth checkpoints/ravlt_s_in1k.pth':
    'fails_without_data',
    'python tools/convert_checkpoint.py maskrcnn_s_1x_12_epoch.pth ravlt_s_maskrcnn.pth '
    '--whole-model':
    'fails_without_data',
    'python tools/train.py configs/maskrcnn_ravlt_t_demo.py': ('covered', 'tests/test_demo_e2e.py'),
    'python tools/train.py configs/upernet_ravlt_t_demo.py --work-dir work_dirs/seg '
    '--cfg-options train_cfg.max_iters=20 train_cfg.val_interval=20':
    'slow',
    'python tools/train.py configs/upernet_ravlt_t_demo.py --work-dir work_dirs/seg --resume '
    '--cfg-options train_cfg.max_iters=40 train_cfg.val_interval=20':
    'slow',
    'python tools/test.py configs/upernet_ravlt_t_demo.py work_dirs/seg/iter_40.pth '
    '--show-dir vis':
    'slow',
    'python tools/train.py configs/maskrcnn_ravlt_s_coco.py --amp --cfg-options '
    'train_cfg.max_epochs=1':
    'fails_without_data',
    'python tools/analysis/benchmark.py --quick':
    'slow',
    'python tools/analysis/benchmark.py':
    'parses',
    'python tools/analysis/benchmark.py --retain-heap':
    'parses',
    'make benchmark': ('covered', 'Makefile'),
    'python tools/make_demo_data.py':
    'slow',
    'python tools/convert_checkpoint.py tests/data/official/ravlt_custom_det.pth '
    'work_dirs/journey/ravlt_backbone.pth --allow-custom':
    'slow',
    'python tools/train.py tests/data/journey/upernet_ravlt_custom_demo.py --work-dir '
    'work_dirs/journey/ravlt --cfg-options load_from=work_dirs/journey/ravlt_backbone.pth':
    'slow',
    'python tools/test.py tests/data/journey/upernet_ravlt_custom_demo.py '
    'work_dirs/journey/ravlt/iter_20.pth':
    'slow',
    'python tools/deployment/export_onnx.py tests/data/journey/upernet_ravlt_custom_demo.py '
    '--checkpoint work_dirs/journey/ravlt/iter_20.pth --out work_dirs/journey/ravlt.onnx --part '
    'model --dynamic --shape 256 256 --verify':
    'slow',
    'python tools/deployment/export_onnx.py configs/maskrcnn_ravlt_s_coco.py --out '
    'work_dirs/onnx/ravlt_s.onnx --shape 512 512 --dynamic --verify':
    'slow',
    'python tools/deployment/export_onnx.py configs/upernet_ravlt_s_ade20k.py --out '
    'work_dirs/onnx/upernet_ravlt_s.onnx --part model --shape 512 512 --dynamic --verify':
    'slow',
    'python tools/deployment/export_onnx.py configs/maskrcnn_soft_s_coco.py --out '
    'work_dirs/onnx/maskrcnn_soft_s.onnx --part model --shape 800 1344 --dynamic --verify':
    'slow',
}

# What the one-line refusal of each 'fails_without_data' command names.
MISSING = {
    'RAVLT_S.pth': 'RAVLT_S.pth: no such file',
    'maskrcnn_s_1x_12_epoch.pth': 'maskrcnn_s_1x_12_epoch.pth: no such file',
    'maskrcnn_ravlt_s_coco.py': 'data/coco/',
}


def readme_commands():
    """Command lines of the README's ```bash blocks, comments stripped, in order."""
    with open(osp.join(ROOT, 'README.md')) as f:
        text = f.read()
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, re.S):
        for line in block.splitlines():
            line = line.split('#', 1)[0].strip()
            if line:
                commands.append(' '.join(line.split()))
    return commands


def scratch_repo(tmp_path):
    """A folder where README commands run as printed without touching the checkout."""
    for name in ('configs', 'tools', 'mmlinattn', 'tests'):
        os.symlink(osp.join(ROOT, name), tmp_path / name)
    return tmp_path


def load_tool(path):
    spec = importlib.util.spec_from_file_location('readme_' + re.sub(r'\W', '_', path),
                                                  osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_is_accounted_for():
    commands = readme_commands()
    unknown = [c for c in commands if c not in COMMANDS]
    assert not unknown, f'README commands with no check in tests/test_readme.py: {unknown}'
    stale = [c for c in COMMANDS if c not in commands]
    assert not stale, f'checks for commands the README no longer has: {stale}'
    for command, kind in COMMANDS.items():
        if isinstance(kind, tuple):
            assert osp.exists(osp.join(ROOT, kind[1])), (command, kind)
    makefile = open(osp.join(ROOT, 'Makefile')).read()
    assert 'benchmark.py --update-docs' in makefile and 'make test' in open(
        osp.join(ROOT, '.ci', 'run')).read()


@pytest.mark.parametrize('command', [c for c, k in COMMANDS.items() if k == 'fails_without_data'])
def test_commands_that_need_external_data_stop_in_one_line(command, tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(scratch_repo(tmp_path))
    words = shlex.split(command)
    assert words[0] == 'python'
    tool = load_tool(words[1])
    assert tool.main(words[2:]) == 2
    out, err = capfd.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in err, err
    needle = next(v for k, v in MISSING.items() if k in command)
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize('command', [c for c, k in COMMANDS.items() if k == 'parses'])
def test_long_benchmark_commands_parse(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    words = shlex.split(command)
    args = load_tool(words[1]).parse_args(words[2:])
    assert args.out.startswith(osp.join('work_dirs', 'benchmark'))


@pytest.mark.slow
def test_readme_runs_as_printed(tmp_path):
    """The 'slow' commands, exactly as printed and in README order, in one scratch folder."""
    scratch = scratch_repo(tmp_path)

    def run(command):
        words = shlex.split(command)
        words[0] = sys.executable if words[0] == 'python' else words[0]
        proc = subprocess.run(words, cwd=scratch, capture_output=True, text=True, timeout=1800)
        assert proc.returncode == 0, (command, (proc.stdout + proc.stderr)[-3000:])
        return proc.stdout + proc.stderr

    run('python tools/make_demo_data.py')
    logs = {}
    for command in readme_commands():
        if COMMANDS[command] == 'slow':
            logs[command] = run(command)
    assert osp.isfile(scratch / 'work_dirs' / 'seg' / 'iter_40.pth')
    test_log = next(log for command, log in logs.items() if '--show-dir' in command)
    drawn = re.search(r'^drawn predictions: (.+)$', test_log, re.M).group(1)
    assert len([f for f in os.listdir(scratch / drawn) if f.endswith('.png')]) == 16
    reports = list((scratch / 'work_dirs' / 'benchmark').iterdir())
    assert len(reports) == 1 and (reports[0] / 'summary.md').is_file()
