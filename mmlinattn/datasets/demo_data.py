"""Embedded demo data: small synthetic COCO and ADE20K-layout datasets, generated in seconds.

Two generators, both pure numpy + OpenCV and deterministic for a given seed (every image is drawn
from its own random stream keyed by ``(seed, dataset, split, index)``, so the same parameters always
give byte-identical files):

* :func:`make_coco_demo` writes a COCO-format **instance segmentation** set of coloured shapes
  (``circle`` red, ``square`` green, ``triangle`` blue) of different sizes, some overlapping, on
  textured backgrounds. Occlusion is resolved exactly: the annotation of an object is its visible
  part (its shape minus the shapes drawn after it); layouts in which an object would become mostly
  hidden, hollow or split into slivers are rejected while the image is composed, so every object in
  an image is annotated and every annotation is a clean polygon set.
* :func:`make_ade_demo` writes an ADE20K-layout **semantic segmentation** set (street-like scenes
  with sky, floor, buildings and walls, plus unlabelled clutter). Label maps use ADE20K's
  convention: ``0`` = other/ignore and ``k`` = the k-th ADE20K class, to be read with
  ``reduce_zero_label=True``. The demo classes are the *first four* ADE20K classes (``wall,
  building, sky, floor``), in ADE20K order. That is deliberate: mmseg turns
  ``metainfo=dict(classes=...)`` into a ``label_map`` from ADE20K's 150 indices to the new ones, so
  the stored labels must be ADE20K indices; with a prefix of the ADE20K class list that map is the
  identity, and label ``k`` in a PNG is class ``k - 1`` after ``reduce_zero_label`` both with and
  without the custom metainfo.

Both generators write a marker file (:data:`MARKER_NAME`) with their parameters into the output
directory. Re-running with the same parameters is a no-op, different parameters or
``overwrite=True`` regenerate, and a non-empty directory without the marker is never written to.
"""
import json
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

__all__ = [
    'COCO_DEMO_CLASSES', 'COCO_DEMO_PALETTE', 'ADE_DEMO_CLASSES', 'ADE_DEMO_PALETTE', 'MARKER_NAME',
    'make_coco_demo', 'make_ade_demo', 'make_cls_demo'
]

#: Object classes of the COCO demo set; category ids are ``1..3`` in this order.
COCO_DEMO_CLASSES = ('circle', 'square', 'triangle')
#: RGB display colours of the COCO demo classes (close to the colours the shapes are painted in).
COCO_DEMO_PALETTE = [(220, 40, 40), (40, 180, 60), (40, 90, 230)]
#: Classes of the ADE demo set, label ``k`` in the PNGs is ``ADE_DEMO_CLASSES[k - 1]``. They are the
#: first four entries of mmseg's ``ADE20KDataset.METAINFO['classes']`` (see the module docstring).
ADE_DEMO_CLASSES = ('wall', 'building', 'sky', 'floor')
#: RGB palette of the ADE demo classes: mmseg's ADE20K palette entries for these classes.
ADE_DEMO_PALETTE = [(120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50)]

#: Name of the marker file that identifies a directory written by this module.
MARKER_NAME = '.mmlinattn_demo.json'
_GENERATOR = 'mmlinattn.datasets.demo_data'
_FORMAT_VERSION = 2  # bump whenever the output for given parameters changes

# OpenCV hue (0..180) at which each COCO class is painted: red, green, blue.
_COCO_HUES = (0, 60, 115)
_SPLIT_IDS = {'train': 0, 'val': 1, 'training': 0, 'validation': 1}
_KIND_IDS = {'coco': 1, 'ade': 2, 'cls': 3}

SizeLike = Union[int, Sequence[int]]


# ----------------------------------------------------------------------------------------------
# shared helpers
# ----------------------------------------------------------------------------------------------
def _parse_size(img_size: SizeLike) -> Tuple[int, int]:
    """Turn ``img_size`` (int or ``(width, height)``) into ``(width, height)``."""
    if isinstance(img_size, (int, np.integer)):
        w = h = int(img_size)
    else:
        w, h = (int(v) for v in img_size)
    if w < 64 or h < 64:
        raise ValueError(f'img_size must be at least 64 pixels per side, got {img_size!r}')
    return w, h


def _check_counts(num_train: int, num_val: int) -> None:
    for name, n in (('num_train', num_train), ('num_val', num_val)):
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f'{name} must be a positive integer, got {n!r}')


def _rng(seed: int, kind: str, split: str, index: int) -> np.random.Generator:
    """Independent random stream for one image, so images do not depend on the split sizes."""
    return np.random.default_rng([int(seed), _KIND_IDS[kind], _SPLIT_IDS[split], int(index)])


def _hsv_to_bgr(h: float, s: float, v: float) -> np.ndarray:
    """One OpenCV HSV colour (h in 0..180, s, v in 0..255) to a float32 BGR triple."""
    hsv = np.array([[[int(round(h)) % 180,
                      int(np.clip(s, 0, 255)),
                      int(np.clip(v, 0, 255))]]],
                   dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _smooth_noise(rng: np.random.Generator,
                  w: int,
                  h: int,
                  cells: int,
                  channels: int = 1) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (a random ``cells x cells`` grid upsampled bicubically)."""
    grid = rng.uniform(-1.0, 1.0, size=(cells, cells, channels)).astype(np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels)


def _finish(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Add pixel noise and convert a float BGR image to uint8."""
    img = img + rng.normal(0.0, sigma, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _imwrite(path: Path, img: np.ndarray, params: Optional[List[int]] = None) -> None:
    if not cv2.imwrite(str(path), img, params or []):
        raise OSError(f'could not write image {path}')


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(obj, f, separators=(',', ':'))
    os.replace(tmp, path)


def _prepare_out_dir(out: Path, kind: str, params: dict, overwrite: bool,
                     owned: Sequence[str]) -> Optional[dict]:
    """Check that ``out`` may be written and clean up an earlier generated set if needed.

    Args:
        out: Output directory.
        kind: ``'coco'``, ``'ade'`` or ``'cls'``.
        params: Generation parameters (JSON-compatible) recorded in the marker file.
        overwrite: Regenerate even if the directory already holds this exact set.
        owned: Top-level entries of ``out`` that the generator writes (removed before regenerating).

    Returns:
        The marker content if ``out`` already holds a complete set made with ``params`` (and
        ``overwrite`` is False), otherwise None once the directory is ready to be written.

    Raises:
        FileExistsError: ``out`` is a non-empty directory not written by this generator, holds the
            other kind of demo set, or is a file.
    """
    if out.exists() and not out.is_dir():
        raise FileExistsError(f'demo data output {out} exists and is not a directory')
    marker = out / MARKER_NAME
    if marker.is_file():
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            info = None
        if not isinstance(info, dict) or info.get('generator') != _GENERATOR:
            raise FileExistsError(
                f'{marker} is not a marker written by {_GENERATOR}; refusing to write demo data '
                f'into {out}. Remove the directory or choose another output directory.')
        if info.get('kind') != kind:
            raise FileExistsError(
                f'{out} holds a generated {info.get("kind")!r} demo set, not a {kind!r} one; '
                'choose '
                'another output directory.')
        if (not overwrite and info.get('complete') and info.get('params') == params
                and _files_present(out, info)):
            return info
        for name in owned:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        marker.unlink()
    elif out.is_dir() and any(out.iterdir()):
        raise FileExistsError(
            f'refusing to write the {kind} demo set into {out}: the directory is not empty and '
            'has no '
            f'{MARKER_NAME} marker, so it was not made by this generator. Choose a new or empty '
            'directory (default: data/demo), or remove this one yourself.')
    return None


def _files_present(out: Path, info: dict) -> bool:
    """Cheap completeness check of a generated set against the counts stored in its marker."""
    try:
        for rel in info['files']:
            if not (out / rel).is_file():
                return False
        for rel, count in info['dir_counts'].items():
            if len(os.listdir(out / rel)) != count:
                return False
    except (KeyError, OSError, TypeError, AttributeError):
        return False
    return True


def _write_marker(out: Path, kind: str, params: dict, complete: bool, **extra) -> None:
    info = dict(generator=_GENERATOR, kind=kind, complete=complete, params=params, **extra)
    _write_json(out / MARKER_NAME, info)


# ----------------------------------------------------------------------------------------------
# COCO instance segmentation
# ----------------------------------------------------------------------------------------------
def _coco_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Muted, textured background: smooth colour field, blotches, lines (float32 BGR)."""
    base = _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 55), rng.uniform(90, 190))
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    img += 30.0 * _smooth_noise(rng, w, h, int(rng.integers(3, 6)), 1)
    img += 10.0 * _smooth_noise(rng, w, h, 4, 3)  # slight colour drift
    img += 12.0 * _smooth_noise(rng, w, h, int(rng.integers(12, 24)), 1)
    for _ in range(int(rng.integers(3, 9))):  # muted straight lines (cables, seams, cracks)
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p2 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        colour = base + rng.uniform(-45, 45, size=3).astype(np.float32)
        cv2.line(img, p1, p2, colour.tolist(), int(rng.integers(1, 4)), cv2.LINE_AA)
    return img


def _shape_polygon(label: int, cx: float, cy: float, size: float, angle: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Vertices (float, N x 2) of a square or triangle of extent ``size`` centred at (cx, cy)."""
    if label == 1:  # square
        pts = cv2.boxPoints(((cx, cy), (size, size), angle))
    else:  # triangle, roughly equilateral
        theta = np.deg2rad(angle) + np.arange(3) * 2 * np.pi / 3
        r = size * 0.62 * rng.uniform(0.9, 1.1, size=3)
        pts = np.stack([cx + r * np.cos(theta), cy + r * np.sin(theta)], axis=1)
    return np.asarray(pts, dtype=np.float64)


def _shape_mask(label: int, cx: float, cy: float, size: float, angle: float, w: int, h: int,
                rng: np.random.Generator) -> Tuple[np.ndarray, float]:
    """Rasterise one shape. Returns its (in-image) mask and its full, unclipped area."""
    mask = np.zeros((h, w), np.uint8)
    if label == 0:  # circle
        radius = max(2, int(round(size / 2)))
        cv2.circle(mask, (int(round(cx)), int(round(cy))), radius, 1, -1, cv2.LINE_8)
        ideal = np.pi * radius * radius
    else:
        pts = _shape_polygon(label, cx, cy, size, angle, rng)
        cv2.fillPoly(mask, [np.rint(pts).astype(np.int32)], 1, cv2.LINE_8)
        ideal = abs(cv2.contourArea(pts.astype(np.float32)))
    return mask.astype(bool), float(ideal)


def _visible_masks(masks: Sequence[np.ndarray]) -> List[np.ndarray]:
    """Visible part of each mask when they are drawn in order (later ones on top)."""
    covered = np.zeros_like(masks[0])
    out = [None] * len(masks)
    for i in range(len(masks) - 1, -1, -1):
        out[i] = masks[i] & ~covered
        covered |= masks[i]
    return out


_OPEN_KERNEL = np.ones((3, 3), np.uint8)


def _visible_ok(vis: np.ndarray, full_area: int, min_visible: float, min_pixels: int) -> bool:
    """Whether a visible mask can be annotated cleanly by polygons.

    It must keep ``min_visible`` of its area, contain no hole (a COCO polygon set cannot describe a
    hole), have no connected piece below ``min_pixels`` and no 1-2 pixel wide slivers.
    """
    area = int(vis.sum())
    if area < min_pixels or area < min_visible * full_area:
        return False
    m = vis.astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n > 1 and stats[1:, cv2.CC_STAT_AREA].min() < min_pixels:
        return False
    _, hierarchy = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hierarchy is not None and (hierarchy[0][:, 3] != -1).any():
        return False
    opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, _OPEN_KERNEL)
    return int(opened.sum()) >= 0.85 * area


def _mask_to_polygons(mask: np.ndarray) -> List[List[float]]:
    """Outer contours of a binary mask as COCO polygons ``[x1, y1, x2, y2, ...]``.

    OpenCV returns the centres of the boundary pixels (pixel ``i`` spans ``[i, i + 1)`` in COCO's
    continuous coordinates); moving every vertex half a pixel outward along the contour's normal
    puts the polygon on the pixel edges, so that rasterising it again (pycocotools) reproduces the
    mask closely instead of shrinking it by half a pixel all round (measured: the same pixel count
    and IoU 1.0 on the demo shapes, against IoU 0.75-0.97 for the raw contours of small shapes).
    """
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    ys, xs = np.nonzero(mask)
    # the miter at a sharp corner may poke out of the pixel box; keep polygons inside the bbox
    lo = np.array([xs.min(), ys.min()], np.float64)
    hi = np.array([xs.max() + 1, ys.max() + 1], np.float64)
    polygons = []
    for contour in contours:
        pts = contour.reshape(-1, 2).astype(np.float64)
        if len(pts) < 3:
            continue
        polygons.append(np.clip(_offset_polygon(pts), lo, hi).round(2).ravel().tolist())
    return polygons


def _offset_polygon(pts: np.ndarray, dist: float = 0.5) -> np.ndarray:
    """Move the pixel-centre contour ``pts`` outward by ``dist`` and into continuous coordinates.

    Each vertex moves along the sum of the outward normals of its two edges, scaled so that both
    edges move by ``dist`` (miter join, capped for sharp corners), then by +0.5 to pixel centres.
    """
    prev_pts = np.roll(pts, 1, axis=0)
    next_pts = np.roll(pts, -1, axis=0)
    signed = 0.5 * np.sum(pts[:, 0] * next_pts[:, 1] - next_pts[:, 0] * pts[:, 1])
    orient = 1.0 if signed >= 0 else -1.0  # image coords (y down): sign picks the outward side

    def normals(a, b):
        d = b - a
        n = np.stack([d[:, 1], -d[:, 0]], axis=1) * orient
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, length, out=np.zeros_like(n), where=length > 0)

    n_in = normals(prev_pts, pts)
    n_out = normals(pts, next_pts)
    bisector = n_in + n_out
    cos_half = np.sum(bisector * n_in, axis=1, keepdims=True)
    norm = np.linalg.norm(bisector, axis=1, keepdims=True)
    cos_half = np.divide(cos_half, norm, out=np.ones_like(cos_half), where=norm > 0)
    direction = np.divide(bisector, norm, out=np.zeros_like(bisector), where=norm > 0)
    scale = dist / np.maximum(cos_half, 0.5)  # miter limit 2 * dist
    return pts + 0.5 + direction * scale


def _render_coco_image(rng: np.random.Generator, w: int, h: int) -> Tuple[np.ndarray, List[dict]]:
    """Compose one image. Returns the uint8 BGR image and its objects (label, visible mask)."""
    img = _coco_background(rng, w, h)
    short = min(w, h)
    s_min, s_max = max(10.0, 0.06 * short), 0.36 * short
    min_pixels = 20
    n_target = int(rng.integers(2, 7))
    objs: List[dict] = []
    attempts = 0
    while len(objs) < n_target and attempts < 25 * n_target:
        attempts += 1
        label = int(rng.integers(len(COCO_DEMO_CLASSES)))
        size = float(np.exp(rng.uniform(np.log(s_min), np.log(s_max))))
        angle = float(rng.uniform(-30, 30) if label == 1 else rng.uniform(0, 360))
        if objs and rng.random() < 0.4:  # place next to an existing object to make overlaps
            other = objs[int(rng.integers(len(objs)))]
            reach = 0.45 * (other['size'] + size)
            cx, cy = other['centre'] + rng.uniform(-reach, reach, size=2)
        else:
            cx = rng.uniform(0.25 * size, w - 0.25 * size)
            cy = rng.uniform(0.25 * size, h - 0.25 * size)
        mask, ideal = _shape_mask(label, cx, cy, size, angle, w, h, rng)
        area = int(mask.sum())
        if area < max(min_pixels, 0.7 * ideal):  # mostly outside the image
            continue
        cand = objs + [
            dict(label=label, size=size, centre=np.array([cx, cy]), mask=mask, area=area)
        ]
        visible = _visible_masks([o['mask'] for o in cand])
        if all(_visible_ok(v, o['area'], 0.5, min_pixels) for v, o in zip(visible[:-1], objs)):
            objs = cand

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for obj in objs:
        hue = _COCO_HUES[obj['label']] + rng.uniform(-8, 8)
        colour = _hsv_to_bgr(hue, rng.uniform(150, 255), rng.uniform(150, 250))
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-6
        cx, cy = obj['centre']
        shade = ((xx - cx) * direction[0] + (yy - cy) * direction[1]) * (
            rng.uniform(15, 40) / obj['size'])
        layer = colour[None, None, :] + shade[..., None]
        img[obj['mask']] = layer[obj['mask']]
        # darker rim, so that touching objects of the same class stay separable
        m = obj['mask'].astype(np.uint8)
        rim = (m - cv2.erode(m, _OPEN_KERNEL)).astype(bool)
        img[rim] *= 0.6
    img = _finish(img, rng, sigma=5.0)
    visible = _visible_masks([o['mask'] for o in objs]) if objs else []
    return img, [dict(label=o['label'], mask=v) for o, v in zip(objs, visible)]


def _coco_annotation(mask: np.ndarray, ann_id: int, image_id: int, label: int) -> dict:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=label + 1,
        segmentation=_mask_to_polygons(mask),
        area=int(mask.sum()),
        bbox=[x0, y0, int(xs.max()) - x0 + 1,
              int(ys.max()) - y0 + 1],
        iscrowd=0)


def _start_set(out_dir: Union[str, Path], kind: str, img_size: SizeLike, num_train: int,
               num_val: int, seed: int, overwrite: bool,
               owned: Sequence[str]) -> Tuple[Path, Tuple[int, int], dict, Optional[dict]]:
    """What every generator does first: check the arguments, decide whether ``out_dir`` already
    holds this exact set (:func:`_prepare_out_dir`) and, if not, create it with an incomplete
    marker.

    Returns:
        tuple: ``(out, (w, h), params, info)``; ``info`` is the marker of an existing identical set
        that is kept (nothing to write), None when the set is to be generated.
    """
    out = Path(out_dir)
    w, h = _parse_size(img_size)
    _check_counts(num_train, num_val)
    params = dict(
        num_train=int(num_train),
        num_val=int(num_val),
        img_size=[w, h],
        seed=int(seed),
        format_version=_FORMAT_VERSION)
    info = _prepare_out_dir(out, kind, params, overwrite, owned=owned)
    if info is None:
        out.mkdir(parents=True, exist_ok=True)
        _write_marker(out, kind, params, complete=False)
    return out, (w, h), params, info


def make_coco_demo(out_dir: Union[str, Path],
                   num_train: int = 64,
                   num_val: int = 16,
                   img_size: SizeLike = 256,
                   seed: int = 0,
                   overwrite: bool = False) -> Dict:
    """Write the COCO-format instance-segmentation demo set.

    Layout::

        out_dir/train/train_00000.png ...
        out_dir/val/val_00000.png ...
        out_dir/annotations/instances_train.json
        out_dir/annotations/instances_val.json
        out_dir/.mmlinattn_demo.json            (marker with the parameters)

    Each image holds 2-6 shapes of the classes :data:`COCO_DEMO_CLASSES` (category ids 1..3). An
    annotation describes the visible part of its object: ``segmentation`` is a list of polygons (one
    per visible piece), ``bbox`` is ``[x, y, w, h]`` of the visible pixels, ``area`` their count.

    Args:
        out_dir: Output directory; created if missing. It must be empty, missing, or a directory
            written earlier by this function.
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Image size, an int (square) or ``(width, height)``.
        seed: Random seed; the same seed and parameters give byte-identical files.
        overwrite: Regenerate even if ``out_dir`` already holds this exact set.

    Returns:
        dict: Summary with ``root``, ``classes``, ``palette``, ``img_size`` (w, h), ``seed``,
        ``splits`` (per split: ``img_dir``, ``ann_file``, ``num_images``, ``num_annotations``),
        ``generated`` (False when an existing identical set was kept) and ``elapsed_s``.

    Raises:
        FileExistsError: ``out_dir`` is not empty and was not written by this generator.
        ValueError: Invalid counts or size.
    """
    t0 = time.perf_counter()
    out, (w, h), params, info = _start_set(out_dir, 'coco', img_size, num_train, num_val, seed,
                                           overwrite, ['train', 'val', 'annotations'])
    generated = info is None
    splits = (('train', int(num_train)), ('val', int(num_val)))
    if generated:
        categories = [
            dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(COCO_DEMO_CLASSES)
        ]
        (out / 'annotations').mkdir(exist_ok=True)
        counts = {}
        for split, n in splits:
            img_dir = out / split
            img_dir.mkdir(exist_ok=True)
            images, annotations = [], []
            for idx in range(n):
                img, objs = _render_coco_image(_rng(seed, 'coco', split, idx), w, h)
                file_name = f'{split}_{idx:05d}.png'
                _imwrite(img_dir / file_name, img)
                image_id = idx + 1
                images.append(dict(id=image_id, file_name=file_name, width=w, height=h))
                for obj in objs:
                    annotations.append(
                        _coco_annotation(obj['mask'],
                                         len(annotations) + 1, image_id, obj['label']))
            coco = dict(
                info=dict(
                    description='mmlinattn synthetic shapes demo (instance segmentation)',
                    version=str(_FORMAT_VERSION),
                    seed=int(seed)),
                licenses=[],
                images=images,
                annotations=annotations,
                categories=categories)
            _write_json(out / 'annotations' / f'instances_{split}.json', coco)
            counts[split] = dict(num_images=n, num_annotations=len(annotations))
        info = dict(
            counts=counts,
            files=[f'annotations/instances_{s}.json' for s, _ in splits],
            dir_counts={
                s: n
                for s, n in splits
            })
        _write_marker(out, 'coco', params, complete=True, **info)
    summary = dict(
        kind='coco',
        root=str(out),
        classes=list(COCO_DEMO_CLASSES),
        palette=[list(c) for c in COCO_DEMO_PALETTE],
        img_size=[w, h],
        seed=int(seed),
        splits={
            s:
            dict(
                img_dir=str(out / s),
                ann_file=str(out / 'annotations' / f'instances_{s}.json'),
                **info['counts'][s])
            for s, _ in splits
        },
        generated=generated,
        elapsed_s=round(time.perf_counter() - t0, 3))
    return summary


# ----------------------------------------------------------------------------------------------
# ADE20K-layout semantic segmentation
# ----------------------------------------------------------------------------------------------
_WALL, _BUILDING, _SKY, _FLOOR = (
    ADE_DEMO_CLASSES.index(c) + 1 for c in ('wall', 'building', 'sky', 'floor'))


def _render_ade_image(rng: np.random.Generator, w: int, h: int) -> Tuple[np.ndarray, np.ndarray]:
    """Compose one street-like scene. Returns the uint8 BGR image and its uint8 label map."""
    img = np.zeros((h, w, 3), np.float32)
    label = np.zeros((h, w), np.uint8)
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    horizon = int(h * rng.uniform(0.32, 0.55))

    # sky: vertical gradient from deep blue to a pale horizon, a few soft clouds
    sky_hue = rng.uniform(98, 118)
    top = _hsv_to_bgr(sky_hue, rng.uniform(150, 230), rng.uniform(150, 215))
    bottom = _hsv_to_bgr(sky_hue + rng.uniform(-6, 6), rng.uniform(30, 90), rng.uniform(215, 255))
    t = np.clip(rows / max(horizon, 1), 0, 1)
    img[:horizon] = (top * (1 - t) + bottom * t)[:horizon].repeat(w, axis=1)
    for _ in range(int(rng.integers(0, 4))):
        cloud = np.zeros((h, w), np.float32)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, max(horizon - 5, 1))))
        axes = (int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.02, 0.06) * h))
        cv2.ellipse(cloud, centre, axes, 0, 0, 360, 1.0, -1)
        cloud = cv2.GaussianBlur(cloud, (0, 0), 4)[:horizon, :, None] * rng.uniform(0.4, 0.8)
        img[:horizon] = img[:horizon] * (1 - cloud) + 245 * cloud
    label[:horizon] = _SKY

    # floor: beige tiles converging to a vanishing point on the horizon, with smooth shading
    floor = _hsv_to_bgr(rng.uniform(12, 30), rng.uniform(40, 110), rng.uniform(110, 190))
    img[horizon:] = floor
    img[horizon:] += 25.0 * _smooth_noise(rng, w, h - horizon, 4, 1)
    grout = (floor * 0.65).tolist()
    vx = rng.uniform(0.3, 0.7) * w
    for k in range(-12, 13):
        cv2.line(img, (int(vx), horizon), (int(vx + k * 0.25 * w), h + 2 * h), grout, 1,
                 cv2.LINE_AA)
    depth = float(h - horizon)
    for k in range(1, 12):
        y = horizon + int(depth * (k / 11.0)**2)
        cv2.line(img, (0, y), (w, y), grout, 1, cv2.LINE_AA)
    label[horizon:] = _FLOOR

    # buildings: grey/slate blocks (some with a gable roof) standing on the horizon, with windows
    for _ in range(int(rng.integers(1, 4))):
        bw = int(rng.uniform(0.12, 0.3) * w)
        x0 = int(rng.uniform(-0.05 * w, w - 0.6 * bw))
        x1 = x0 + bw
        y_top = max(2, int(horizon - rng.uniform(0.15, 0.42) * h))
        y_bot = min(h - 1, int(horizon + rng.uniform(0.0, 0.04) * h))
        poly = [(x0, y_bot), (x0, y_top), (x1, y_top), (x1, y_bot)]
        if rng.random() < 0.4:
            apex = max(0, int(y_top - rng.uniform(0.3, 0.6) * bw))
            poly = [(x0, y_bot), (x0, y_top), ((x0 + x1) // 2, apex), (x1, y_top), (x1, y_bot)]
        pts = np.array(poly, np.int32)
        colour = _hsv_to_bgr(rng.uniform(0, 180), rng.uniform(0, 45), rng.uniform(70, 160))
        cv2.fillPoly(img, [pts], colour.tolist(), cv2.LINE_8)
        cv2.fillPoly(label, [pts], _BUILDING, cv2.LINE_8)
        lit = rng.random() < 0.5
        win = (_hsv_to_bgr(25, 160, 230) if lit else colour * 0.45).tolist()
        step = max(6, int(bw / rng.integers(3, 6)))
        for wy in range(y_top + 4, y_bot - 6, step):
            for wx in range(x0 + 3, x1 - 5, step):
                cv2.rectangle(img, (wx, wy), (wx + step // 2, wy + step // 2), win, -1)

    # walls: low, wide red-brick segments standing on the floor
    for _ in range(int(rng.integers(1, 3))):
        ww = int(rng.uniform(0.25, 0.6) * w)
        wh = int(rng.uniform(0.09, 0.2) * h)
        y1 = int(rng.uniform(horizon + 0.3 * (h - horizon), h + 0.3 * wh))
        y0 = y1 - wh
        x0 = int(rng.uniform(-0.1 * w, w - 0.7 * ww))
        skew = int(rng.uniform(-0.1, 0.1) * ww)
        pts = np.array([(x0, y1), (x0 + skew, y0), (x0 + ww + skew, y0), (x0 + ww, y1)], np.int32)
        brick = _hsv_to_bgr(rng.uniform(0, 12), rng.uniform(150, 220), rng.uniform(120, 200))
        layer = np.zeros((h, w), np.uint8)
        cv2.fillPoly(layer, [pts], 1, cv2.LINE_8)
        region = layer.astype(bool)
        img[region] = brick
        mortar = np.zeros((h, w, 3), np.float32)
        course = max(4, wh // 4)
        for i, y in enumerate(range(y0, y1, course)):
            cv2.line(mortar, (0, y), (w, y), (1, 1, 1), 1)
            for x in range(x0 - (course if i % 2 else 0), x0 + ww + abs(skew) + course, 2 * course):
                cv2.line(mortar, (x, y), (x, y + course), (1, 1, 1), 1)
        img[region] = np.where(mortar[region] > 0, 200.0, img[region])
        label[region] = _WALL

    # clutter: unlabelled magenta / yellow blobs (label 0 = other, ignored in training)
    for _ in range(int(rng.integers(1, 4))):
        hue = rng.choice([150.0, 30.0]) + rng.uniform(-8, 8)
        colour = _hsv_to_bgr(hue, rng.uniform(160, 255), rng.uniform(170, 255))
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.uniform(0.03, 0.09) * w), int(rng.uniform(0.03, 0.09) * h))
        angle = float(rng.uniform(0, 180))
        cv2.ellipse(img, centre, axes, angle, 0, 360, colour.tolist(), -1, cv2.LINE_8)
        cv2.ellipse(label, centre, axes, angle, 0, 360, 0, -1, cv2.LINE_8)

    img += 8.0 * _smooth_noise(rng, w, h, 8, 3)
    return _finish(img, rng, sigma=4.0), label


def make_ade_demo(out_dir: Union[str, Path],
                  num_train: int = 64,
                  num_val: int = 16,
                  img_size: SizeLike = 256,
                  seed: int = 0,
                  overwrite: bool = False) -> Dict:
    """Write the ADE20K-layout semantic-segmentation demo set.

    Layout (same stems for an image and its label map)::

        out_dir/images/training/demo_train_00000.jpg ...
        out_dir/images/validation/demo_val_00000.jpg ...
        out_dir/annotations/training/demo_train_00000.png ...
        out_dir/annotations/validation/demo_val_00000.png ...
        out_dir/.mmlinattn_demo.json            (marker with the parameters)

    Label maps are single-channel uint8 PNGs: ``0`` = other (clutter, ignored), ``k`` =
    ``ADE_DEMO_CLASSES[k - 1]`` for ``k = 1..4``. Read them with ``reduce_zero_label=True``
    (``0 -> 255``, ``k -> k - 1``), e.g. with mmseg's ``ADE20KDataset`` and
    ``metainfo=dict(classes=ADE_DEMO_CLASSES)``.

    Args:
        out_dir: Output directory; created if missing. It must be empty, missing, or a directory
            written earlier by this function.
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Image size, an int (square) or ``(width, height)``.
        seed: Random seed; the same seed and parameters give byte-identical files.
        overwrite: Regenerate even if ``out_dir`` already holds this exact set.

    Returns:
        dict: Summary with ``root``, ``classes`` (in label order 1..K), ``palette``, ``img_size``
        (w, h), ``seed``, ``reduce_zero_label`` (True), ``splits`` (per split: ``img_dir``,
        ``ann_dir``, ``num_images``), ``generated`` (False when an existing identical set was kept)
        and ``elapsed_s``.

    Raises:
        FileExistsError: ``out_dir`` is not empty and was not written by this generator.
        ValueError: Invalid counts or size.
    """
    t0 = time.perf_counter()
    out, (w, h), params, info = _start_set(out_dir, 'ade', img_size, num_train, num_val, seed,
                                           overwrite, ['images', 'annotations'])
    generated = info is None
    splits = (('training', 'train', int(num_train)), ('validation', 'val', int(num_val)))
    if generated:
        for split, short, n in splits:
            img_dir = out / 'images' / split
            ann_dir = out / 'annotations' / split
            img_dir.mkdir(parents=True, exist_ok=True)
            ann_dir.mkdir(parents=True, exist_ok=True)
            for idx in range(n):
                img, label = _render_ade_image(_rng(seed, 'ade', split, idx), w, h)
                stem = f'demo_{short}_{idx:05d}'
                _imwrite(img_dir / f'{stem}.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 92])
                _imwrite(ann_dir / f'{stem}.png', label)
        dir_counts = {}
        for split, _, n in splits:
            dir_counts[f'images/{split}'] = n
            dir_counts[f'annotations/{split}'] = n
        _write_marker(out, 'ade', params, complete=True, files=[], dir_counts=dir_counts)
    summary = dict(
        kind='ade',
        root=str(out),
        classes=list(ADE_DEMO_CLASSES),
        palette=[list(c) for c in ADE_DEMO_PALETTE],
        img_size=[w, h],
        seed=int(seed),
        reduce_zero_label=True,
        splits={
            split:
            dict(
                img_dir=str(out / 'images' / split),
                ann_dir=str(out / 'annotations' / split),
                num_images=n)
            for split, _, n in splits
        },
        generated=generated,
        elapsed_s=round(time.perf_counter() - t0, 3))
    return summary


# ----------------------------------------------------------------------------------------------
# Image classification (ImageFolder layout, for timm)
# ----------------------------------------------------------------------------------------------
def _render_cls_image(rng: np.random.Generator, w: int, h: int, label: int) -> np.ndarray:
    """One large shape of class ``label`` (its demo colour, random size, position and angle) on a
    textured background."""
    img = _coco_background(rng, w, h)
    short = min(w, h)
    while True:
        size = float(rng.uniform(0.35, 0.7) * short)
        angle = float(rng.uniform(-30, 30) if label == 1 else rng.uniform(0, 360))
        cx, cy = rng.uniform(0.35 * size,
                             w - 0.35 * size), rng.uniform(0.35 * size, h - 0.35 * size)
        mask, ideal = _shape_mask(label, cx, cy, size, angle, w, h, rng)
        if mask.sum() >= 0.8 * ideal:
            break
    hue = _COCO_HUES[label] + rng.uniform(-8, 8)
    img[mask] = _hsv_to_bgr(hue, rng.uniform(150, 255), rng.uniform(150, 250))
    return _finish(img, rng, sigma=5.0)


def make_cls_demo(out_dir: Union[str, Path],
                  num_train: int = 48,
                  num_val: int = 24,
                  img_size: SizeLike = 64,
                  seed: int = 0,
                  overwrite: bool = False) -> dict:
    """Write a small image-classification set of the demo shapes in the ImageFolder layout.

    ::

        out_dir/train/{circle,square,triangle}/cls_train_00000.png
        out_dir/val/{circle,square,triangle}/cls_val_00000.png

    One shape of class :data:`COCO_DEMO_CLASSES` per image, classes in turn (so each split is
    balanced). timm's ``create_dataset('', root=out_dir, split='train')`` and its ``train.py`` /
    ``validate.py`` (``--data-dir out_dir``) read it as they read ImageNet.

    Args:
        out_dir: Output directory; created if missing. It must be empty, missing, or a directory
            written earlier by this function.
        num_train: Number of training images (all classes).
        num_val: Number of validation images.
        img_size: Image size, an int (square) or ``(width, height)``.
        seed: Random seed; the same seed and parameters give byte-identical files.
        overwrite: Regenerate even if ``out_dir`` already holds this exact set.

    Returns:
        dict: ``root``, ``classes``, ``img_size``, ``seed``, ``splits`` (per split: ``dir``,
        ``num_images``), ``generated`` and ``elapsed_s``.

    Raises:
        FileExistsError: ``out_dir`` is not empty and was not written by this generator.
        ValueError: Invalid counts or size.
    """
    t0 = time.perf_counter()
    out, (w, h), params, info = _start_set(out_dir, 'cls', img_size, num_train, num_val, seed,
                                           overwrite, ['train', 'val'])
    generated = info is None
    splits = (('train', int(num_train)), ('val', int(num_val)))
    if generated:
        dir_counts = {}
        for split, n in splits:
            for name in COCO_DEMO_CLASSES:
                (out / split / name).mkdir(parents=True, exist_ok=True)
            for idx in range(n):
                label = idx % len(COCO_DEMO_CLASSES)
                img = _render_cls_image(_rng(seed, 'cls', split, idx), w, h, label)
                _imwrite(out / split / COCO_DEMO_CLASSES[label] / f'cls_{split}_{idx:05d}.png', img)
            for label, name in enumerate(COCO_DEMO_CLASSES):
                dir_counts[f'{split}/{name}'] = len(range(label, n, len(COCO_DEMO_CLASSES)))
        _write_marker(out, 'cls', params, complete=True, files=[], dir_counts=dir_counts)
    return dict(
        kind='cls',
        root=str(out),
        classes=list(COCO_DEMO_CLASSES),
        img_size=[w, h],
        seed=int(seed),
        splits={
            split: dict(dir=str(out / split), num_images=n)
            for split, n in splits
        },
        generated=generated,
        elapsed_s=round(time.perf_counter() - t0, 3))
