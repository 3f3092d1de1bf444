"""Tests of the embedded demo-data generator (mmlinattn.datasets.demo_data,
tools/make_demo_data.py)."""
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmlinattn.datasets.demo_data import (ADE_DEMO_CLASSES, ADE_DEMO_PALETTE, COCO_DEMO_CLASSES,
                                          COCO_DEMO_PALETTE, MARKER_NAME, make_ade_demo,
                                          make_coco_demo)

REPO = Path(__file__).resolve().parents[2]
# "Generated in seconds": measured ~1-2.5 s per set with the defaults on the 2-core machine; the
# bound
# leaves room for a loaded CI machine.
MAX_SECONDS_PER_SET = 10.0
# Small sets for the tests that generate repeatedly.
SMALL = dict(num_train=3, num_val=2, img_size=128)


def _tree_digest(root: Path) -> dict:
    """Relative path -> sha256 of every file under ``root``."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    """The default-sized demo sets, generated once for the module, with their wall times."""
    root = tmp_path_factory.mktemp('demo')
    times = {}
    t0 = time.perf_counter()
    coco = make_coco_demo(root / 'coco')
    times['coco'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ade = make_ade_demo(root / 'ade')
    times['ade'] = time.perf_counter() - t0
    return dict(root=root, coco=coco, ade=ade, times=times)


# ----------------------------------------------------------------------------------------------
# generation speed, determinism, summaries
# ----------------------------------------------------------------------------------------------
def test_generation_is_fast(demo):
    print(f"generation times: coco {demo['times']['coco']:.2f} s, ade {demo['times']['ade']:.2f} s")
    for kind in ('coco', 'ade'):
        assert demo[kind]['generated'] is True
        assert demo['times'][kind] < MAX_SECONDS_PER_SET, demo['times']


def test_summaries(demo):
    coco, ade = demo['coco'], demo['ade']
    assert coco['classes'] == list(COCO_DEMO_CLASSES)
    assert len(COCO_DEMO_PALETTE) == len(COCO_DEMO_CLASSES)
    assert ade['classes'] == list(ADE_DEMO_CLASSES)
    assert len(ADE_DEMO_PALETTE) == len(ADE_DEMO_CLASSES)
    assert ade['reduce_zero_label'] is True
    assert coco['img_size'] == [256, 256] and ade['img_size'] == [256, 256]
    for split, n in (('train', 64), ('val', 16)):
        info = coco['splits'][split]
        assert info['num_images'] == n == len(os.listdir(info['img_dir']))
        ann = json.loads(Path(info['ann_file']).read_text())
        assert info['num_annotations'] == len(ann['annotations']) > 0
    for split, n in (('training', 64), ('validation', 16)):
        info = ade['splits'][split]
        assert info['num_images'] == n == len(os.listdir(info['img_dir'])) == len(
            os.listdir(info['ann_dir']))


@pytest.mark.parametrize('maker', [make_coco_demo, make_ade_demo])
def test_deterministic(tmp_path, maker):
    maker(tmp_path / 'a', seed=0, **SMALL)
    maker(tmp_path / 'b', seed=0, **SMALL)
    maker(tmp_path / 'c', seed=1, **SMALL)
    a, b, c = (_tree_digest(tmp_path / x) for x in 'abc')
    assert len(a) > SMALL['num_train'] + SMALL['num_val']
    assert a == b  # byte-identical, JSON and images alike
    assert a.keys() == c.keys()
    differing = [k for k in a if a[k] != c[k] and k != MARKER_NAME]
    image_keys = [k for k in a if k.endswith(('.png', '.jpg'))]
    # every image of another seed differs
    assert set(image_keys) <= set(differing)


def test_images_do_not_depend_on_split_sizes(tmp_path, demo):
    """Image i of a split is the same whatever the number of images (own random stream per
    image)."""
    make_coco_demo(tmp_path / 'coco', num_train=2, num_val=1, seed=0)
    for name in ('train/train_00000.png', 'train/train_00001.png', 'val/val_00000.png'):
        assert (tmp_path / 'coco' / name).read_bytes() == (demo['root'] / 'coco' /
                                                           name).read_bytes()


def test_invalid_arguments(tmp_path):
    with pytest.raises(ValueError):
        make_coco_demo(tmp_path / 'x', num_train=0)
    with pytest.raises(ValueError):
        make_ade_demo(tmp_path / 'y', img_size=16)
    assert not (tmp_path / 'x').exists() and not (tmp_path / 'y').exists()


# ----------------------------------------------------------------------------------------------
# COCO set
# ----------------------------------------------------------------------------------------------
def _load_coco(ann_file):
    from pycocotools.coco import COCO
    return COCO(str(ann_file))


def _ann_mask(ann, height, width):
    from pycocotools import mask as mask_utils
    rles = mask_utils.frPyObjects(ann['segmentation'], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_coco_annotations(demo, split):
    info = demo['coco']['splits'][split]
    coco = _load_coco(info['ann_file'])
    cats = coco.loadCats(coco.getCatIds())
    assert [(c['id'], c['name']) for c in cats] == [(i + 1, n)
                                                    for i, n in enumerate(COCO_DEMO_CLASSES)]
    assert len(coco.getImgIds()) == info['num_images']
    assert len({a['id'] for a in coco.dataset['annotations']}) == len(coco.dataset['annotations'])

    # class colour: circles red, squares green, triangles blue -> dominant BGR channel 2, 1, 0
    dominant_channel = {1: 2, 2: 1, 3: 0}
    overlapping_boxes = 0
    for img_id in coco.getImgIds():
        img_info = coco.loadImgs(img_id)[0]
        w, h = img_info['width'], img_info['height']
        img = cv2.imread(os.path.join(info['img_dir'], img_info['file_name']), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == (h, w, 3)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
        assert anns, f'image {img_id} has no objects'
        union = np.zeros((h, w), np.int32)
        for ann in anns:
            assert ann['iscrowd'] == 0
            assert ann['category_id'] in dominant_channel
            assert ann['area'] > 0
            assert ann['segmentation'] and all(
                len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation'])
            x, y, bw, bh = ann['bbox']
            assert bw > 0 and bh > 0
            assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
            coords = np.concatenate([np.reshape(p, (-1, 2)) for p in ann['segmentation']])
            assert (coords[:, 0] >= x).all() and (coords[:, 0] <= x + bw).all()
            assert (coords[:, 1] >= y).all() and (coords[:, 1] <= y + bh).all()

            mask = _ann_mask(ann, h, w)
            area = int(mask.sum())
            assert abs(area - ann['area']) <= 0.02 * ann['area'] + 2, (ann['id'], area, ann['area'])
            ys, xs = np.nonzero(mask)
            assert xs.min() >= x and xs.max() < x + bw and ys.min() >= y and ys.max() < y + bh
            # the polygons reproduce the box of the visible mask (1 px slack)
            assert abs(xs.min() - x) <= 1 and abs(ys.min() - y) <= 1
            assert abs(xs.max() + 1 - (x + bw)) <= 1 and abs(ys.max() + 1 - (y + bh)) <= 1
            union += mask
            mean_bgr = img[mask].reshape(-1, 3).mean(axis=0)
            assert int(np.argmax(mean_bgr)) == dominant_channel[ann['category_id']], (ann['id'],
                                                                                      mean_bgr)
        # visible masks of one image are disjoint (occlusion is resolved); allow rounding pixels
        assert (union > 1).sum() <= 0.01 * (union > 0).sum()
        boxes = [a['bbox'] for a in anns]
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                bi, bj = boxes[i], boxes[j]
                if (min(bi[0] + bi[2], bj[0] + bj[2]) > max(bi[0], bj[0])
                        and min(bi[1] + bi[3], bj[1] + bj[3]) > max(bi[1], bj[1])):
                    overlapping_boxes += 1
    if split == 'train':
        assert overlapping_boxes > 0, 'no overlapping objects in the train split'


def test_coco_variety(demo):
    """All classes, several sizes, occlusions that split objects or several objects per image."""
    coco = _load_coco(demo['coco']['splits']['train']['ann_file'])
    anns = coco.dataset['annotations']
    per_class = {c['id']: 0 for c in coco.dataset['categories']}
    for a in anns:
        per_class[a['category_id']] += 1
    assert all(n >= 0.15 * len(anns) for n in per_class.values()), per_class
    areas = np.array([a['area'] for a in anns])
    assert areas.max() > 10 * areas.min()
    per_image = np.bincount([a['image_id'] for a in anns])[1:]
    assert per_image.max() >= 4 and per_image.min() >= 1


# ----------------------------------------------------------------------------------------------
# ADE set
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('split', ['training', 'validation'])
def test_ade_layout_and_labels(demo, split):
    info = demo['ade']['splits'][split]
    k = len(ADE_DEMO_CLASSES)
    imgs = sorted(os.listdir(info['img_dir']))
    anns = sorted(os.listdir(info['ann_dir']))
    assert all(n.endswith('.jpg') for n in imgs) and all(n.endswith('.png') for n in anns)
    assert [Path(n).stem for n in imgs] == [Path(n).stem for n in anns]
    assert len(imgs) == info['num_images']
    counts = np.zeros(256, np.int64)
    for img_name, ann_name in zip(imgs, anns):
        img = cv2.imread(os.path.join(info['img_dir'], img_name), cv2.IMREAD_UNCHANGED)
        label = cv2.imread(os.path.join(info['ann_dir'], ann_name), cv2.IMREAD_UNCHANGED)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
        assert label.ndim == 2 and label.dtype == np.uint8 and label.shape == img.shape[:2]
        counts += np.bincount(label.ravel(), minlength=256)
    assert counts[k + 1:].sum() == 0, 'labels outside 0..K'
    if split == 'training':
        fractions = counts[:k + 1] / counts.sum()
        print('training label fractions (0=other, then classes):', np.round(fractions, 3))
        assert (fractions[1:] > 0.01).all(), fractions  # every class clearly present
        assert 0 < fractions[0] < 0.2, fractions  # some ignored clutter, not too much


# ----------------------------------------------------------------------------------------------
# marker file: idempotence and refusal
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize('maker', [make_coco_demo, make_ade_demo])
def test_refuses_foreign_directory(tmp_path, maker):
    out = tmp_path / 'mine'
    out.mkdir()
    (out / 'precious.txt').write_text('keep me')
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match='not made by this generator'):
            maker(out, overwrite=overwrite, **SMALL)
    assert sorted(os.listdir(out)) == ['precious.txt']
    assert (out / 'precious.txt').read_text() == 'keep me'
    # a marker that is not ours is refused too
    (out / MARKER_NAME).write_text('{"hello": 1}')
    with pytest.raises(FileExistsError):
        maker(out, **SMALL)
    # an existing empty directory is fine
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert maker(empty, **SMALL)['generated'] is True


def test_refuses_other_kind(tmp_path):
    make_coco_demo(tmp_path / 'd', **SMALL)
    with pytest.raises(FileExistsError, match="'coco'"):
        make_ade_demo(tmp_path / 'd', **SMALL)


@pytest.mark.parametrize('maker', [make_coco_demo, make_ade_demo])
def test_rerun_is_noop_and_params_change_regenerates(tmp_path, maker):
    out = tmp_path / 'd'
    first = maker(out, **SMALL)
    before = _tree_digest(out)
    mtimes = {p: os.stat(out / p).st_mtime_ns for p in before}

    t0 = time.perf_counter()
    again = maker(out, **SMALL)
    assert time.perf_counter() - t0 < 1.0
    assert again['generated'] is False
    assert {
        k: v
        for k, v in again.items() if k not in ('generated', 'elapsed_s')
    } == {
        k: v
        for k, v in first.items() if k not in ('generated', 'elapsed_s')
    }
    assert {p: os.stat(out / p).st_mtime_ns for p in before} == mtimes

    assert maker(out, overwrite=True, **SMALL)['generated'] is True
    assert _tree_digest(out) == before

    fewer = dict(SMALL, num_train=2)
    summary = maker(out, **fewer)
    assert summary['generated'] is True
    train_split = 'train' if 'train' in summary['splits'] else 'training'
    assert summary['splits'][train_split]['num_images'] == 2
    assert len(os.listdir(summary['splits'][train_split]['img_dir'])) == 2  # old files removed


def test_incomplete_set_is_regenerated(tmp_path):
    out = tmp_path / 'd'
    make_coco_demo(out, **SMALL)
    marker = json.loads((out / MARKER_NAME).read_text())
    (out / 'train' / 'train_00000.png').unlink()  # damaged set, marker still complete
    assert make_coco_demo(out, **SMALL)['generated'] is True
    assert (out / 'train' / 'train_00000.png').is_file()
    marker['complete'] = False  # interrupted run
    (out / MARKER_NAME).write_text(json.dumps(marker))
    assert make_coco_demo(out, **SMALL)['generated'] is True


# ----------------------------------------------------------------------------------------------
# command line tool
# ----------------------------------------------------------------------------------------------
def test_cli(tmp_path):
    cmd = [
        sys.executable,
        str(REPO / 'tools' / 'make_demo_data.py'), '--out',
        str(tmp_path / 'demo'), '--num-train', '3', '--num-val', '2', '--size', '128'
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'coco' in res.stdout and 'ade' in res.stdout and 'done in' in res.stdout
    assert (tmp_path / 'demo' / 'coco' / 'annotations' / 'instances_val.json').is_file()
    assert len(os.listdir(tmp_path / 'demo' / 'ade' / 'images' / 'training')) == 3

    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and 'up to date' in res.stdout

    foreign = tmp_path / 'foreign'
    (foreign / 'ade').mkdir(parents=True)
    (foreign / 'ade' / 'x.txt').write_text('x')
    res = subprocess.run([
        sys.executable,
        str(REPO / 'tools' / 'make_demo_data.py'), '--out',
        str(foreign), '--only', 'ade', '--num-train', '2', '--num-val', '1', '--size', '64'
    ],
                         capture_output=True,
                         text=True,
                         timeout=120)
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1 and 'not made by this generator' in res.stderr
    assert 'Traceback' not in res.stderr


# ----------------------------------------------------------------------------------------------
# loading through mmdet / mmseg
# ----------------------------------------------------------------------------------------------
def test_mmdet_coco_dataset_loads(demo):
    pytest.importorskip('mmdet')
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    from mmdet.datasets import CocoDataset

    root = demo['coco']['root']
    ref = _load_coco(demo['coco']['splits']['val']['ann_file'])
    ds = CocoDataset(
        data_root=root,
        ann_file='annotations/instances_val.json',
        data_prefix=dict(img='val/'),
        metainfo=dict(classes=COCO_DEMO_CLASSES),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
        ])
    assert len(ds) == demo['coco']['splits']['val']['num_images']
    assert tuple(ds.metainfo['classes']) == COCO_DEMO_CLASSES
    by_name = {img['file_name']: img['id'] for img in ref.dataset['images']}
    for i in range(len(ds)):
        item = ds[i]
        anns = ref.loadAnns(ref.getAnnIds(imgIds=by_name[os.path.basename(item['img_path'])]))
        assert item['img'].shape == (256, 256, 3)
        labels = np.asarray(item['gt_bboxes_labels'])
        assert labels.tolist() == [a['category_id'] - 1 for a in anns]
        boxes = np.asarray(item['gt_bboxes'].tensor)
        expected = np.array([[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in anns)])
        np.testing.assert_allclose(boxes, expected)
        assert not np.asarray(item['gt_ignore_flags']).any()
        masks = item['gt_masks'].masks
        assert masks.shape == (len(anns), 256, 256)
        for mask, ann in zip(masks, anns):
            assert abs(int(mask.sum()) - ann['area']) <= 0.02 * ann['area'] + 2


def test_mmseg_ade_dataset_loads(demo):
    pytest.importorskip('mmseg')
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    from mmseg.datasets import ADE20KDataset

    k = len(ADE_DEMO_CLASSES)
    # the demo classes are ADE20K's first classes, so mmseg's label_map is the identity on them
    assert tuple(ADE20KDataset.METAINFO['classes'][:k]) == ADE_DEMO_CLASSES
    assert [list(p)
            for p in ADE20KDataset.METAINFO['palette'][:k]] == [list(p) for p in ADE_DEMO_PALETTE]
    root = demo['ade']['root']
    for split in ('training', 'validation'):
        ds = ADE20KDataset(
            data_root=root,
            data_prefix=dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}'),
            reduce_zero_label=True,
            metainfo=dict(classes=ADE_DEMO_CLASSES),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations')])
        assert len(ds) == demo['ade']['splits'][split]['num_images']
        assert tuple(ds.metainfo['classes']) == ADE_DEMO_CLASSES
        assert {o: n for o, n in ds.label_map.items() if n != 255} == {i: i for i in range(k)}
        if split == 'training':
            continue
        for i in range(len(ds)):
            item = ds[i]
            raw = cv2.imread(item['seg_map_path'], cv2.IMREAD_UNCHANGED).astype(np.int64)
            expected = np.where(raw == 0, 255, raw - 1)
            np.testing.assert_array_equal(item['gt_seg_map'], expected)
            assert set(np.unique(item['gt_seg_map'])) <= set(range(k)) | {255}
