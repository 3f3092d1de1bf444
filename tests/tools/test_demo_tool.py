"""tools/demo.py draws predictions to one PNG per image and explains mistakes in one line."""
import importlib.util
import os.path as osp
import subprocess
import sys

import cv2
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'tools', 'demo.py')


@pytest.fixture(scope='module')
def demo_tool():
    spec = importlib.util.spec_from_file_location('mmlinattn_demo_tool', DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def two_photos(tmp_path_factory, photograph):
    from skimage import data
    folder = tmp_path_factory.mktemp('photos')
    cv2.imwrite(str(folder / 'coffee.png'), cv2.imread(photograph))
    cv2.imwrite(str(folder / 'astronaut.jpg'), data.astronaut()[..., ::-1])
    (folder / 'notes.txt').write_text('not an image')
    return folder


def assert_png_like(path, source):
    drawn = cv2.imread(str(path))
    assert drawn is not None, path
    assert drawn.shape == cv2.imread(str(source)).shape


def test_detection_png(demo_tool, demo_checkpoints, photograph, tmp_path, capsys):
    config, checkpoint = demo_checkpoints['det']
    out_dir = tmp_path / 'vis'
    assert demo_tool.main([
        photograph, config, checkpoint, '--out-dir',
        str(out_dir), '--device', 'cpu', '--score-thr', '0.05'
    ]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out_dir / 'coffee.png')]
    assert_png_like(printed[0], photograph)


@pytest.mark.slow  # a fresh interpreter (imports mmdet/mmseg): ~5-8 s
def test_segmentation_folder_cli(demo_checkpoints, two_photos, tmp_path):
    config, checkpoint = demo_checkpoints['seg']
    out_dir = tmp_path / 'vis'
    proc = subprocess.run(
        [sys.executable, DEMO,
         str(two_photos), config, checkpoint, '--out-dir',
         str(out_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = proc.stdout.split()  # only the paths: library chatter is on stderr
    assert written == [str(out_dir / 'astronaut.png'), str(out_dir / 'coffee.png')]
    assert_png_like(written[0], two_photos / 'astronaut.jpg')
    assert_png_like(written[1], two_photos / 'coffee.png')


def test_output_names_keep_apart_equal_stems(demo_tool):
    assert demo_tool.output_names(['a/x.jpg', 'a/x.png', 'a/y.bmp'], 'out') == \
        ['out/x_jpg.png', 'out/x_png.png', 'out/y.png']


@pytest.mark.parametrize('case, needles', [
    ('image', ('image', 'does not exist')),
    ('empty_folder', ('holds no image', )),
    ('config', ('not found', 'maskrcnn_ravlt_t_demo.py')),
    ('checkpoint', ('checkpoint', 'does not exist', 'tools/train.py')),
])
def test_one_line_errors(demo_tool, demo_checkpoints, photograph, tmp_path, capsys, case, needles):
    config, checkpoint = demo_checkpoints['det']
    args = [photograph, config, checkpoint]
    if case == 'image':
        args[0] = str(tmp_path / 'missing.jpg')
    elif case == 'empty_folder':
        args[0] = str(tmp_path)
    elif case == 'config':
        args[1] = osp.join(ROOT, 'configs', 'maskrcnn_ravlt_t_dmeo.py')
    else:
        args[2] = str(tmp_path / 'missing.pth')
    assert demo_tool.main(args + ['--out-dir', str(tmp_path / 'vis')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error: '), err
    for needle in needles:
        assert needle in err[0]
    assert not (tmp_path / 'vis').exists()
