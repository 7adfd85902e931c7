"""convert_to_backbone_weights and the checkpoint pipeline under it (backbones.weights): wrappers,
dropping, kernel cropping, verify and one-line errors."""
import argparse
import copy
import os
import re
import subprocess
import sys
import tomllib
from collections import OrderedDict

import pytest
import timm
import torch
from torch import nn

from mm_efficient_backbones.backbones import MODEL_TO_BACKBONE, RecNeXtBackbone
from mm_efficient_backbones.backbones.models import registry
from mm_efficient_backbones.backbones.weights import fit
from mm_efficient_backbones.backbones.weights import pipeline as weights
from mm_efficient_backbones.backbones.models.multiscale import MultiScaleBackbone
from conftest import ROOT, reference_shapes
from mm_efficient_backbones.tools import convert_to_backbone_weights as convert

SCRIPT = ROOT / 'tools' / 'convert_to_backbone_weights.py'
INPUT = (1, 3, 64, 96)
M0_TENSORS = len(RecNeXtBackbone('m0').state_dict())


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: one thread is as fast, and OpenMP threads that spin while the
    machine is busy made forward passes ~100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- helpers ---------------------------------------------------------------------------
def randomized(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and BN statistics, so a wrong or missing tensor changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith('num_batches_tracked'):
                tensor.fill_(int(torch.randint(1, 1000, (1,), generator=gen)))
            elif name.endswith('running_var'):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + 0.75)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=gen) * 0.1)
    return model.eval()


def recnext_classifier(arch: str, seed: int = 0) -> nn.Module:
    return randomized(timm.create_model(f'recnext_{arch}'), seed)


def recnext_stage_features(classifier, x):
    """Every stage's output of the classifier's trunk (stem + stages)."""
    feats, x = [], classifier.stem(x)
    for stage in classifier.stages:
        x = stage(x)
        feats.append(x)
    return feats


def run(capsys, *argv):
    """main() in-process; returns (exit code, stdout, stderr)."""
    code = convert.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def args_for(model, checkpoint, out_dir, *extra):
    return ('--model', model, '--checkpoint', checkpoint, '--output-dir', out_dir, *extra)


def assert_fails_cleanly(capsys, argv, message, out_dir, code=2):
    """One matching line on stderr, no traceback, the exit code, nothing left in out_dir."""
    got, _, err = run(capsys, *argv)
    lines = err.strip().splitlines()
    assert got == code
    assert len(lines) == 1, err
    assert re.search(message, lines[0]), lines[0]
    assert lines[0].startswith('convert_to_backbone_weights: error: ')
    assert 'Traceback' not in err
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


# ---- the published wrapper formats ---------------------------------------------------------
def wrap(fmt: str, sd: dict, ema_sd: dict):
    if fmt == 'model':
        return {'model': sd, 'epoch': 299}
    if fmt == 'model+model_ema':
        return {'model': sd, 'model_ema': ema_sd, 'epoch': 299}
    if fmt == 'state_dict':
        return {'state_dict': sd}
    if fmt == 'module':
        return {'module': sd}
    if fmt == 'raw':
        return sd
    if fmt == 'module.-prefixed':  # a DataParallel / DDP model saved as is
        return OrderedDict((f'module.{k}', v) for k, v in sd.items())
    raise ValueError(fmt)


FORMATS = ['model', 'model+model_ema', 'state_dict', 'module', 'raw', 'module.-prefixed']


@pytest.mark.parametrize('fmt', FORMATS)
@pytest.mark.parametrize('arch', ['m0', 'm1'])
def test_converted_backbone_equals_classifier_trunk(tmp_path, capsys, arch, fmt):
    classifier, ema = recnext_classifier(arch, seed=1), recnext_classifier(arch, seed=2)
    source = tmp_path / 'classifier.pth'
    torch.save(wrap(fmt, classifier.state_dict(), ema.state_dict()), source)
    use_ema = fmt == 'model+model_ema'
    code, out, err = run(capsys, *args_for(f'recnext_{arch}', source, tmp_path / 'out',
                                           *(['--ema'] if use_ema else [])))
    assert code == 0 and err == '', err
    for step in ('load', 'unwrap', 'drop', 'map', 'crop', 'write'):
        assert re.search(rf'^\[\d/6\] {step} ', out, re.M), out
    assert 'head.head: 7 tensors, head.head_dist: 7 tensors' in out

    out_path = tmp_path / 'out' / f'recnext_{arch}_backbone.pth'
    saved = torch.load(out_path, weights_only=True)
    meta = saved['meta']
    assert meta['weights'] == ('model_ema' if use_ema else {
        'model+model_ema': 'model', 'raw': '<raw state_dict>',
        'module.-prefixed': '<raw state_dict>'}.get(fmt, fmt))
    assert meta['dropped'] == {'head.head': 7, 'head.head_dist': 7} and meta['cropped'] == {}
    assert meta['model'] == f'recnext_{arch}' and len(meta['source_sha256']) == 64
    assert not any(k.startswith('head') for k in saved['state_dict'])

    backbone = RecNeXtBackbone(arch)
    backbone.load_state_dict(saved['state_dict'], strict=True)
    from_config = RecNeXtBackbone(arch, init_cfg=dict(type='Pretrained', checkpoint=str(out_path)))
    from_config.init_weights()
    want = ema if use_ema else classifier
    x = torch.randn(*INPUT)
    with torch.no_grad():
        expected = recnext_stage_features(want, x)
        assert torch.equal(expected[-1], want.forward_features(x))
        for model in (backbone.eval(), from_config.eval()):
            got = model(x)
            assert len(got) == 4
            for a, b in zip(got, expected):
                assert torch.equal(a, b)
        if use_ema:  # the EMA copy really is different weights
            assert not torch.equal(recnext_stage_features(classifier, x)[-1], expected[-1])


def test_ema_note_and_warning(tmp_path, capsys):
    sd = recnext_classifier('m0').state_dict()
    both = tmp_path / 'both.pth'
    torch.save({'model': sd, 'model_ema': sd}, both)
    code, out, _ = run(capsys, *args_for('recnext_m0', both, tmp_path / 'a'))
    assert code == 0 and "weights from 'model' ('model_ema' also present: --ema uses it)" in out

    plain = tmp_path / 'plain.pth'
    torch.save({'model': sd}, plain)
    code, out, err = run(capsys, *args_for('recnext_m0', plain, tmp_path / 'b', '--ema'))
    assert code == 0
    assert err.strip() == ("convert_to_backbone_weights: warning: --ema given but the checkpoint has "
                           "no EMA weights (model_ema); using 'model'")
    assert "weights from 'model'" in out


def first_model_of_each_family():
    firsts = {}
    for name, (cls, _) in MODEL_TO_BACKBONE.items():
        firsts.setdefault(cls.family, name)
    return sorted(firsts.values())


@pytest.mark.parametrize('model', first_model_of_each_family())
def test_verify_every_family(tmp_path, capsys, model):
    """Every registered family converts its own timm classifier and passes --verify."""
    if not timm.is_model(model):
        pytest.skip(f'{model} has no timm classifier of the same name')
    classifier = randomized(timm.create_model(model), seed=3)
    torch.save({'model': classifier.state_dict()}, tmp_path / 'cls.pth')
    code, out, err = run(capsys, *args_for(model, tmp_path / 'cls.pth', tmp_path, '--verify'))
    n = len(MODEL_TO_BACKBONE[model].build().state_dict())
    assert code == 0, err
    assert re.search(r'^\[7/7\] verify strict load and forward pass: features ', out, re.M)
    assert re.fullmatch(rf'ok: {n} tensors, \d+ cropped', out.rstrip().splitlines()[-1])


def test_script_runs_from_any_directory(tmp_path):
    torch.save({'model': recnext_classifier('m0').state_dict()}, tmp_path / 'cls.pth')
    # Oriented1D's spelling: --variant joins the model name, --output_dir with an underscore.
    proc = subprocess.run([sys.executable, str(SCRIPT), '--model', 'recnext', '--variant', 'm0',
                           '--checkpoint', 'cls.pth', '--output_dir', 'out', '--verify'],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.rstrip().endswith(f'ok: {M0_TENSORS} tensors, 0 cropped')
    assert (tmp_path / 'out' / 'recnext_m0_backbone.pth').is_file()


def test_console_script_points_at_main():
    scripts = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['scripts']
    module, func = scripts['convert_to_backbone_weights'].split(':')
    assert module == 'mm_efficient_backbones.tools.convert_to_backbone_weights' and getattr(convert, func) is convert.main


def test_family_rules_come_from_the_backbone_class():
    rules = weights.FamilyRules.of(RecNeXtBackbone)
    assert rules.family == 'RecNeXt' and rules.classifier_prefixes == ('head', 'head_dist')
    assert not rules.crop_kernels
    sd = {'stem.x': torch.zeros(1)}
    assert rules.remap_keys(sd) is sd


# ---- kernel cropping, on a tiny family registered here ---------------------------------------
TINY_DIMS = (8, 8, 16, 16)


class TinyStage(nn.Sequential):
    """Stride-2 conv, then a depthwise 1xk conv (the kernel the backbone crops) and BN."""

    def __init__(self, in_channels, channels, kernel):
        super().__init__()
        self.down = nn.Conv2d(in_channels, channels, 3, stride=2, padding=1)
        self.dwconv = nn.Conv2d(channels, channels, (1, kernel), padding=(0, kernel // 2), groups=channels)
        self.norm = nn.BatchNorm2d(channels)


def tiny_trunk(kernel, in_channels=3):
    stem = nn.Sequential(nn.Conv2d(in_channels, TINY_DIMS[0], 3, stride=2, padding=1),
                         nn.BatchNorm2d(TINY_DIMS[0]))
    ins = (TINY_DIMS[0],) + TINY_DIMS[:-1]
    stages = [TinyStage(cin, cout, kernel) for cin, cout in zip(ins, TINY_DIMS)]
    info = [dict(num_chs=c, reduction=4 * 2 ** i) for i, c in enumerate(TINY_DIMS)]
    return stem, stages, info


class TinyKernelBackbone(MultiScaleBackbone):
    """Plugs into the converter with the three family rules, as a real family would."""

    family = 'TinyKernel'
    archs = {'k13': (13,), 'k31': (31,)}
    classifier_prefixes = ('norm', 'head')  # the final norm and the fc exist only in the classifier
    crop_classifier_kernels = True

    @staticmethod
    def remap_classifier_keys(state_dict):
        # The classifier names its stages 'layers'.
        return OrderedDict((re.sub(r'^layers\.', 'stages.', k), v) for k, v in state_dict.items())

    def build(self, arch, drop_path_rate, in_channels):
        self.stem, stages, info = tiny_trunk(self.archs[arch][0], in_channels)
        self.stages = nn.ModuleList(stages)
        return info


class TinyClassifier(nn.Module):
    def __init__(self, kernel=31):
        super().__init__()
        self.stem, stages, _ = tiny_trunk(kernel)
        self.layers = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(TINY_DIMS[-1])
        self.head = nn.Sequential(OrderedDict(fc=nn.Linear(TINY_DIMS[-1], 10)))

    def stage_features(self, x):
        feats, x = [], self.stem(x)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


@pytest.fixture
def tiny_family(monkeypatch):
    """A family declared the way a family file declares one, for this test only."""
    record = registry.Family(type='TinyKernel', backbone=TinyKernelBackbone, classifiers=(TinyClassifier,),
                             archs=TinyKernelBackbone.archs, models={'tiny_k13': registry.Model('k13')},
                             key_signature=r'^layers\.\d+\.dwconv\.weight$')
    monkeypatch.setitem(registry._FAMILIES, record.type, record)


def zero_outside_centre(weight: torch.Tensor, width: int) -> torch.Tensor:
    start = (weight.shape[-1] - width) // 2
    masked = torch.zeros_like(weight)
    masked[..., start:start + width] = weight[..., start:start + width]
    return masked


def test_kernels_are_centre_cropped(tmp_path, capsys, tiny_family):
    classifier = randomized(TinyClassifier(kernel=31), seed=4)
    torch.save({'model': classifier.state_dict()}, tmp_path / 'tiny.pth')
    code, out, err = run(capsys, *args_for('tiny_k13', tmp_path / 'tiny.pth', tmp_path / 'out', '--verify'))
    assert code == 0, err
    assert 'norm: 2 tensors, head.fc: 2 tensors' in out and 'renamed 36 keys' in out
    assert re.search(r'stages\.0\.dwconv\.weight 8x1x1x31 -> 8x1x1x13: \d+\.\d% of the L2 norm removed', out)
    assert out.rstrip().splitlines()[-1] == 'ok: 43 tensors, 4 cropped'

    out_path = tmp_path / 'out' / 'tiny_k13_backbone.pth'
    saved = torch.load(out_path, weights_only=True)
    backbone = TinyKernelBackbone('k13')
    backbone.load_state_dict(saved['state_dict'], strict=True)
    from_config = TinyKernelBackbone('k13', init_cfg=dict(type='Pretrained', checkpoint=str(out_path)))
    from_config.init_weights()

    # The classifier with every tap outside the centre 13 set to zero is what the backbone computes.
    windowed = copy.deepcopy(classifier)
    cropped = saved['meta']['cropped']
    assert sorted(cropped) == [f'stages.{i}.dwconv.weight' for i in range(4)]
    with torch.no_grad():
        for i, layer in enumerate(windowed.layers):
            full = layer.dwconv.weight.clone()
            layer.dwconv.weight.copy_(zero_outside_centre(full, 13))
            kept = full[..., 9:22].double().norm() / full.double().norm()
            assert cropped[f'stages.{i}.dwconv.weight']['norm_removed'] == pytest.approx(1 - kept.item())
        x = torch.randn(*INPUT)
        want = windowed.stage_features(x)
        for model in (backbone.eval(), from_config.eval()):
            for a, b in zip(model(x), want):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        # ...and cropping did change the function, so the check above can fail. (Stage 0 is
        # 24 wide here, so its outer taps see data; deeper maps are too narrow to matter.)
        uncropped = classifier.stage_features(x)[0]
        assert (uncropped - want[0]).abs().max() > 0.1 * want[0].abs().max()


@pytest.mark.parametrize('source, target, window', [
    ((96, 1, 1, 31), (96, 1, 1, 13), (slice(None), slice(None), slice(None), slice(9, 22))),
    ((96, 1, 7, 7), (96, 1, 3, 3), (slice(None), slice(None), slice(2, 5), slice(2, 5))),
    ((96, 1, 31), (96, 1, 13), (slice(None), slice(None), slice(9, 22))),
    ((96, 1, 1, 30), (96, 1, 1, 13), None),  # even source: no centre tap
    ((96, 1, 1, 31), (96, 1, 1, 12), None),  # even target
    ((96, 1, 1, 13), (96, 1, 1, 31), None),  # growing is not cropping
    ((96, 1, 1, 31), (64, 1, 1, 13), None),  # channels differ too
    ((96, 1, 1, 31), (96, 1, 31), None),  # rank differs
    ((1000, 768), (1000, 512), None),  # not a conv
    ((96, 1, 1, 31), (96, 1, 1, 31), None),  # nothing to crop
])
def test_centre_crop_window(source, target, window):
    assert fit.centre_crop_window(source, target) == window


def test_uncroppable_tiny_mismatch_fails(tmp_path, capsys, tiny_family):
    state = TinyClassifier(kernel=31).state_dict()
    state['layers.1.dwconv.weight'] = torch.randn(8, 1, 1, 30)
    torch.save({'model': state}, tmp_path / 'tiny.pth')
    assert_fails_cleanly(capsys, args_for('tiny_k13', tmp_path / 'tiny.pth', tmp_path / 'out'),
                         r'shape mismatch that cropping cannot explain: stages\.1\.dwconv\.weight has '
                         r'shape \(8, 1, 1, 30\)', tmp_path / 'out')


def test_families_without_the_rule_never_crop(tmp_path, capsys):
    state = recnext_classifier('m0').state_dict()
    state['stages.0.blocks.0.token_mixer.convs.0.weight'] = torch.randn(40, 1, 7, 7)
    torch.save({'model': state}, tmp_path / 'cls.pth')
    assert_fails_cleanly(capsys, args_for('recnext_m0', tmp_path / 'cls.pth', tmp_path / 'out'),
                         r'shape mismatch that cropping cannot explain: stages\.0\.blocks\.0\.token_mixer'
                         r'\.convs\.0\.weight has shape \(40, 1, 7, 7\) .* but \(40, 1, 5, 5\)', tmp_path / 'out')


# ---- bad input: one line on stderr, exit code 2, no output file -----------------------------------
def test_missing_file(tmp_path, capsys):
    assert_fails_cleanly(capsys, args_for('recnext_m0', tmp_path / 'nope.pth', tmp_path / 'out'),
                         r'checkpoint not found: \S*nope\.pth$', tmp_path / 'out')


def test_not_a_torch_file(tmp_path, capsys):
    (tmp_path / 'junk.pth').write_text('<html>404 Not Found</html>')
    assert_fails_cleanly(capsys, args_for('recnext_m0', tmp_path / 'junk.pth', tmp_path / 'out'),
                         r'junk\.pth is not a torch checkpoint', tmp_path / 'out')


def test_checkpoint_of_another_family(tmp_path, capsys):
    shapes = reference_shapes('repnext_m0')
    torch.save({'model': {k: torch.zeros(s) for k, s in shapes.items()}}, tmp_path / 'repnext.pth')
    assert_fails_cleanly(capsys, args_for('recnext_m3', tmp_path / 'repnext.pth', tmp_path / 'out'),
                         r'repnext\.pth looks like a RepNeXt checkpoint, not RecNeXt '
                         r'\(--model recnext_m3\); use --model repnext_m0 / .* / repnext_m5$', tmp_path / 'out')


def test_other_family_names_its_models(tmp_path, capsys, tiny_family):
    torch.save({'model': TinyClassifier().state_dict()}, tmp_path / 'tiny.pth')
    assert_fails_cleanly(capsys, args_for('recnext_m0', tmp_path / 'tiny.pth', tmp_path / 'out'),
                         r'looks like a TinyKernel checkpoint, not RecNeXt \(--model recnext_m0\); '
                         r'use --model tiny_k13$', tmp_path / 'out')


def test_unrelated_keys(tmp_path, capsys):
    torch.save({'features.0.weight': torch.zeros(3)}, tmp_path / 'other.pth')
    assert_fails_cleanly(capsys, args_for('recnext_m0', tmp_path / 'other.pth', tmp_path / 'out'),
                         r'other\.pth: no keys match recnext_m0 backbone; pass a RecNeXt classifier or backbone checkpoint$', tmp_path / 'out')


def test_other_arch_is_a_shape_mismatch(tmp_path, capsys):
    torch.save({'model': recnext_classifier('m2').state_dict()}, tmp_path / 'm2.pth')
    assert_fails_cleanly(capsys, args_for('recnext_m0', tmp_path / 'm2.pth', tmp_path / 'out'),
                         r'm2\.pth: shape mismatch that cropping cannot explain: stem\.stem\.0\.conv\.weight '
                         r'has shape \(28, 3, 3, 3\) in the checkpoint but \(20, 3, 3, 3\) in the model '
                         r'\(and \d+ more\); is it a checkpoint of another RecNeXt arch\?', tmp_path / 'out')


def test_missing_tensors(tmp_path, capsys):
    state = recnext_classifier('m0').state_dict()
    del state['stages.3.blocks.0.norm.weight']
    torch.save({'model': state}, tmp_path / 'cut.pth')
    assert_fails_cleanly(capsys, args_for('recnext_m0', tmp_path / 'cut.pth', tmp_path / 'out'),
                         r'1 recnext_m0 backbone tensors are missing from the checkpoint '
                         r'\(e\.g\. stages\.3\.blocks\.0\.norm\.weight\)', tmp_path / 'out')


def test_bn_counters_are_filled_in(tmp_path, capsys):
    """Some releases save no num_batches_tracked; the output must still load strictly."""
    state = {k: v for k, v in recnext_classifier('m0').state_dict().items()
             if not k.endswith('num_batches_tracked')}
    torch.save({'model': state}, tmp_path / 'cls.pth')
    code, out, _ = run(capsys, *args_for('recnext_m0', tmp_path / 'cls.pth', tmp_path, '--verify'))
    assert code == 0 and 'BN counters filled in' in out and f'ok: {M0_TENSORS} tensors' in out


def test_existing_output_needs_force(tmp_path, capsys):
    torch.save({'model': recnext_classifier('m0').state_dict()}, tmp_path / 'cls.pth')
    out_dir = tmp_path / 'out'
    out_dir.mkdir()
    existing = out_dir / 'recnext_m0_backbone.pth'
    existing.write_bytes(b'old')
    code, _, err = run(capsys, *args_for('recnext_m0', tmp_path / 'cls.pth', out_dir))
    assert code == 2
    assert err.strip() == (f'convert_to_backbone_weights: error: {existing} already exists; '
                           'pass --force to overwrite it')
    assert existing.read_bytes() == b'old' and list(out_dir.iterdir()) == [existing]

    code, _, _ = run(capsys, *args_for('recnext_m0', tmp_path / 'cls.pth', out_dir, '--force'))
    assert code == 0 and 'state_dict' in torch.load(existing, weights_only=True)


def test_pickled_objects_need_trust(tmp_path, capsys):
    source = tmp_path / 'train.pth'
    torch.save({'model': recnext_classifier('m0').state_dict(), 'args': argparse.Namespace(lr=0.1)}, source)
    assert_fails_cleanly(capsys, args_for('recnext_m0', source, tmp_path / 'out'),
                         r'needs unpickling of arbitrary objects \(argparse\.Namespace\).*--trust-checkpoint',
                         tmp_path / 'out')
    code, _, _ = run(capsys, *args_for('recnext_m0', source, tmp_path / 'out', '--trust-checkpoint'))
    assert code == 0 and (tmp_path / 'out' / 'recnext_m0_backbone.pth').is_file()


def test_unknown_model_lists_valid_names(tmp_path, capsys):
    assert_fails_cleanly(capsys, args_for('recnext_m9', tmp_path / 'x.pth', tmp_path / 'out'),
                         r"unknown model 'recnext_m9': did you mean recnext_m\d, recnext_m\d, recnext_m\d\? choose one of .*recnext_m0, "
                         r"recnext_m1, ",
                         tmp_path / 'out', code=2)


def test_failed_verify_leaves_no_output(tmp_path, capsys):
    state = recnext_classifier('m0').state_dict()
    state['stages.1.blocks.0.norm.running_var'].fill_(float('nan'))
    torch.save({'model': state}, tmp_path / 'nan.pth')
    assert_fails_cleanly(capsys, args_for('recnext_m0', tmp_path / 'nan.pth', tmp_path / 'out', '--verify'),
                         r'verify failed: non-finite features', tmp_path / 'out')


@pytest.mark.parametrize('failure', [OSError(28, 'No space left on device'), KeyboardInterrupt()])
def test_interrupted_write_leaves_no_output(tmp_path, capsys, monkeypatch, failure):
    torch.save({'model': recnext_classifier('m0').state_dict()}, tmp_path / 'cls.pth')

    def half_save(payload, f):
        f.write(b'partial')
        raise failure
    monkeypatch.setattr(weights.torch, 'save', half_save)
    argv = args_for('recnext_m0', tmp_path / 'cls.pth', tmp_path / 'out')
    if isinstance(failure, OSError):
        assert_fails_cleanly(capsys, argv, r'cannot write .*recnext_m0_backbone\.pth: .*No space left on device',
                             tmp_path / 'out')
    else:
        with pytest.raises(KeyboardInterrupt):
            convert.main([str(a) for a in argv])
        assert list((tmp_path / 'out').iterdir()) == []


def test_verify_reports_the_exact_strict_load_mismatch(tmp_path):
    state = RecNeXtBackbone('m0').state_dict()
    del state['stem.stem.0.conv.weight']
    torch.save({'state_dict': state}, tmp_path / 'partial.pth')
    with pytest.raises(weights.ConversionError, match=r'^verify failed: strict load into the backbone: '
                                                      r'Missing key\(s\) in state_dict: "stem\.stem\.0\.conv\.weight"'):
        weights.verify(tmp_path / 'partial.pth', RecNeXtBackbone('m0'))
