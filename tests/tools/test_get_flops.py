"""tools/analysis/get_flops.py prints our parameters and FLOPs beside the papers'."""
import importlib.util
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'analysis', 'get_flops.py')


@pytest.fixture(scope='module')
def get_flops():
    spec = importlib.util.spec_from_file_location('mmlinattn_get_flops_tool', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def table_rows(out):
    rows = []
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.startswith('| ') and cells[0] != 'config':
            rows.append(cells)
    return rows


def giga(cell):
    return float(cell.split('G')[0])


def test_demo_configs(get_flops, capsys):
    configs = [
        osp.join(ROOT, 'configs', name)
        for name in ('maskrcnn_ravlt_t_demo.py', 'upernet_ravlt_t_demo.py')
    ]
    assert get_flops.main(configs + ['--shape', '120', '160']) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ('maskrcnn_ravlt_t_demo', 'backbone RAVLT', '224x224'),
        ('maskrcnn_ravlt_t_demo', 'whole model', '128x160'),  # padded to the divisor 32
        ('upernet_ravlt_t_demo', 'backbone RAVLT', '224x224'),
        ('upernet_ravlt_t_demo', 'whole model', '120x160')
    ]
    for row in rows:
        flops, attention, rest = giga(row[5]), giga(row[6]), giga(row[7])
        assert flops > 0 and attention > 0
        assert abs(flops - attention - rest) < 2e-3
    assert rows[0][3] == rows[2][3] == '1.69M'  # same backbone in both configs
    assert 'Traced but not counted' in out


def test_missing_config(get_flops, capsys):
    assert get_flops.main([osp.join(ROOT, 'configs', 'maskrcnn_ravlt_t_dmeo.py')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: ') and 'maskrcnn_ravlt_t_demo' in err[0]


@pytest.mark.slow
def test_maskrcnn_t_matches_the_paper(get_flops, capsys):
    """Without the attention products (which mmcv 1.x did not count) we get the README's 219G;
    the attention products equal fvcore's matmul count of the released backbone (52.8G)."""
    assert get_flops.main([osp.join(ROOT, 'configs', 'maskrcnn_ravlt_t_coco.py')]) == 0
    backbone, model = table_rows(capsys.readouterr().out)
    assert backbone[3] == '13.35M' and giga(backbone[6]) == 0.201 and backbone[8].startswith('2.4G')
    assert model[2] == '800x1280' and model[4] == '33M' and model[8] == '219G'
    assert round(giga(model[7])) == 219
    assert round(giga(model[6]), 1) == 52.8
