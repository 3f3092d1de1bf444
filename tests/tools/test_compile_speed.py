"""tools/analysis/compile_speed.py: eager and compiled rows of one run, with their ratios."""
import importlib.util
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_tool():
    spec = importlib.util.spec_from_file_location(
        'compile_speed_tool', osp.join(ROOT, 'tools', 'analysis', 'compile_speed.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_and_ratios(tmp_path, capsys):
    tool = load_tool()
    assert tool.main([
        '--models', 'RAVLT-T', '--sizes', '128x160', '--backend', 'eager', '--repeats', '1',
        '--peer', 'RAVLT-T', '--out',
        str(tmp_path)
    ]) == 0
    table = (tmp_path / 'results.md').read_text().splitlines()
    row = next(line for line in table if line.startswith('| RAVLT-T | 128x160 |'))
    cells = [c.strip() for c in row.strip('|').split('|')]
    eager, first, steady, ratio, vs_peer = map(float, cells[2:])
    assert eager > 0 and first > 0 and steady > 0
    # the table rounds the times to ms and the ratios to 0.01, from the unrounded times
    assert ratio == pytest.approx(steady / eager, rel=0.1) and vs_peer == 1.0


def test_unknown_model_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_tool().parse_args(['--models', 'RAVLT-Q'])
    assert exit_info.value.code == 2
    assert "unknown --models ['RAVLT-Q']" in capsys.readouterr().err
