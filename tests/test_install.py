"""The install claims one import name, mm_efficient_backbones, and nothing generic."""
import subprocess
import sys
import zipfile

from conftest import ROOT

GENERIC_NAMES = ('tools', 'detection', 'segmentation', 'mm_common', 'backbones')


def run_python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-c', code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_a_users_own_tools_package_is_not_shadowed(tmp_path):
    """From a folder outside the checkout that has a top-level ``tools`` package of its own."""
    (tmp_path / 'tools').mkdir()
    (tmp_path / 'tools' / '__init__.py').write_text("OWNER = 'user'\n")
    code = '\n'.join([
        'import importlib.util, tools',
        "assert tools.OWNER == 'user', tools.__file__",
        'from mm_efficient_backbones.tools import train',
        'from mm_efficient_backbones import detection, segmentation, backbones',
        'import timm',
        "timm.create_model('recnext_m0')",
        "print('ours:', train.__file__)",
        f'for name in {GENERIC_NAMES[1:]!r}:',
        "    assert importlib.util.find_spec(name) is None, name",
    ])
    result = run_python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"ours: {ROOT / 'tools' / 'train.py'}" in result.stdout


def test_a_wheel_holds_only_the_one_package(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation',
                             '-q', '-w', str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    wheel, = tmp_path.glob('*.whl')
    with zipfile.ZipFile(wheel) as archive:
        top = {name.split('/')[0] for name in archive.namelist()}
        names = archive.namelist()
    assert top == {'mm_efficient_backbones', 'mm_efficient_backbones-0.1.0.dist-info'}, top
    for package in GENERIC_NAMES:
        assert f'mm_efficient_backbones/{package}/__init__.py' in names
    entry_points = next(n for n in names if n.endswith('entry_points.txt'))
    with zipfile.ZipFile(wheel) as archive:
        scripts = archive.read(entry_points).decode()
    assert 'convert_to_backbone_weights = mm_efficient_backbones.tools.convert_to_backbone_weights:main' in scripts


def test_tools_run_from_the_checkout_and_the_console_scripts_exist():
    result = subprocess.run([sys.executable, 'tools/train.py', '--help'], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and 'Train a detector or segmentor' in result.stdout, result.stderr[-2000:]
    bin_dir = ROOT / '.venv' / 'bin'
    if (bin_dir / 'python').exists() and sys.prefix == str(ROOT / '.venv'):
        for script in ('convert_to_backbone_weights', 'reparameterize', 'benchmark', 'log-results'):
            assert (bin_dir / script).exists(), script
