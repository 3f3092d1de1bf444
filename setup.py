"""Packaging for mmlinattn.

mmcv is deliberately not pinned in ``install_requires`` as a source build: pip would build it in an
isolated environment and silently drop its compiled ops. ``tools/setup_env.sh`` builds and caches
the wheel first; the requirement below then only checks the version range.
"""
import os.path as osp
from setuptools import find_packages, setup

DEPLOY = ['onnx>=1.16', 'onnxruntime>=1.18', 'onnxscript>=0.2', 'scikit-image']


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmlinattn', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


setup(
    name='mmlinattn',
    version=read_version(),
    description='Linear-attention vision backbones (RAVLT, SOFT/SOFT++) for MMDetection 3.x and '
    'MMSegmentation 1.x',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['mmlinattn', 'mmlinattn.*']),
    python_requires='>=3.9',
    install_requires=[
        # safe_globals (weights_only loading), torch.cond and torch.compiler.is_compiling
        'torch>=2.5',
        'mmengine>=0.10.7,<1.0',
        'mmcv>=2.0.0rc4,<2.2.0',
        'mmdet>=3.3.0,<3.4',
        'mmsegmentation>=1.2.2,<1.3',
        'timm>=1.0',
        'pycocotools',
        'numpy',
        'opencv-python',
        'ftfy',
        'regex',
    ],
    extras_require={
        # ONNX export and ONNX Runtime inference (tools/deployment/export_onnx.py); onnxscript for
        # --simplify, scikit-image for --verify's photograph.
        'deploy': DEPLOY,
        'tests':
        ['pytest>=7', 'pytest-timeout', 'scikit-image', 'flake8', 'isort', 'yapf'] + DEPLOY,
    },
    zip_safe=False,
)
