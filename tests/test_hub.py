"""Published weights: timm pretrained=True, the configs' default init_cfg URLs, the checked
cached download, and every URL against the published list. No network: a local HTTP server
on 127.0.0.1 serves the files."""
import dataclasses
import hashlib
import http.server
import io
import re
import socket
import threading
from collections import Counter
from pathlib import Path

import pytest
import timm
import torch

from mm_efficient_backbones.backbones.models import registry
from mm_efficient_backbones.backbones.models.recnext import RECNEXT_ARCHS, RecNeXtBackbone
from mm_efficient_backbones.backbones.models.repnext import REPNEXT_ARCHS
from mm_efficient_backbones.backbones.weights import hub, zoo
from conftest import ROOT

# The published files of these families, written out from the issue, independently of the
# family records (a family added later checks its own in its test file).
RECNEXT = 'https://github.com/suous/RecNeXt/releases/download'
REPNEXT = 'https://github.com/suous/RepNeXt/releases/download'
PUBLISHED = {
    'RecNeXt': {
        *(f'{RECNEXT}/v1.0/recnext_m{i}_{kind}_300e.pth' for i in range(6) for kind in ('distill', 'without_distill')),
        *(f'{RECNEXT}/v2.0/recnext_a{i}_{kind}_300e.pth' for i in range(6) for kind in ('distill', 'without_distill')),
        *(f'{RECNEXT}/v1.0/recnext_m{i}_{task}.pth' for i in (3, 4, 5) for task in ('coco', 'ade20k')),
        *(f'{RECNEXT}/v2.0/recnext_a{i}_{task}.pth' for i in (3, 4, 5) for task in ('coco', 'ade20k'))},
    'RepNeXt': {
        *(f'{REPNEXT}/v1.0/repnext_m{i}_distill_300e.pth' for i in range(6)),
        *(f'{REPNEXT}/v1.0/repnext_m{i}_{task}.pth' for i in (3, 4, 5) for task in ('coco', 'ade20k'))},
    'ReXNet': set(),  # timm's own weights (Hugging Face) and clovaai's Google Drive files
    'ConvNeXt1D': set(),  # Google Drive only
}
URL_IN_TEXT = re.compile(r"https?://[^\s'\"()]+")
# timm tag -> the authors' file name suffix (the default tag first).
TAG_FILES = {'dist_in1k': 'distill_300e', 'in1k': 'without_distill_300e'}


class Server:
    """Serves ``files`` (path -> bytes); ``/truncated/NAME`` promises more bytes than it sends."""

    def __init__(self):
        self.files, self.requests = {}, Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests[self.path] += 1
                truncated = self.path.startswith('/truncated/')
                body = server.files.get(self.path.replace('/truncated', '', 1) if truncated else self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if truncated else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = f'http://127.0.0.1:{self.httpd.server_address[1]}'
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache for this test."""
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    return tmp_path / 'hub' / 'checkpoints'


def torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def random_state(model: torch.nn.Module, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {k: (torch.randn(v.shape, generator=generator) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()}


def serve_releases_from(server, monkeypatch, model='recnext_m0'):
    """Point the families' releases, and the timm cfgs made from them, at the local server."""
    from timm.models import _registry, generate_default_cfgs
    from mm_efficient_backbones.backbones.models.recnext import _cfg
    for record in registry.families():
        local = tuple(dataclasses.replace(release, base=release.base.replace('https://github.com', server.url))
                      for release in record.releases)
        monkeypatch.setitem(registry._FAMILIES, record.type, dataclasses.replace(record, releases=local))
    cfgs = generate_default_cfgs(registry.family_of_model(model).pretrained_cfgs(_cfg))
    for name, default in cfgs.items():
        if name != model:
            continue
        for index, tag in enumerate(default.tags):
            cfg = dataclasses.replace(default.cfgs[tag], architecture=name, tag=tag)
            monkeypatch.setitem(_registry._model_pretrained_cfgs, f'{name}.{tag}', cfg)
            if index == 0:
                monkeypatch.setitem(_registry._model_pretrained_cfgs, name, cfg)


@pytest.fixture(scope='module')
def m0_releases():
    """Two distinct recnext_m0 classifier releases, as the authors save them."""
    model = timm.create_model('recnext_m0')
    return {tag: random_state(model, seed) for seed, tag in enumerate(TAG_FILES)}


@pytest.mark.parametrize('name, tag', [('recnext_m0', 'dist_in1k'), ('recnext_m0.dist_in1k', 'dist_in1k'),
                                       ('recnext_m0.in1k', 'in1k')])
def test_pretrained_true_downloads_the_tagged_release_and_loads_it_strictly(
        name, tag, m0_releases, server, hub_dir, monkeypatch):
    serve_releases_from(server, monkeypatch)
    for each_tag, state in m0_releases.items():
        server.files[f'/suous/RecNeXt/releases/download/v1.0/recnext_m0_{TAG_FILES[each_tag]}.pth'] = \
            torch_bytes({'model': state})
    model = timm.create_model(name, pretrained=True)
    loaded = model.state_dict()
    assert loaded.keys() == m0_releases[tag].keys()
    assert all(torch.equal(loaded[k], m0_releases[tag][k]) for k in loaded)
    assert model.pretrained_cfg['tag'] == tag
    assert [p.name for p in hub_dir.iterdir()] == [f'recnext_m0_{TAG_FILES[tag]}.pth']
    assert sum(server.requests.values()) == 1


def test_pretrained_release_with_a_missing_key_is_refused(m0_releases, server, hub_dir, monkeypatch):
    serve_releases_from(server, monkeypatch)
    state = dict(m0_releases['dist_in1k'])
    state.pop('head.head_dist.linear.bias')
    server.files['/suous/RecNeXt/releases/download/v1.0/recnext_m0_distill_300e.pth'] = torch_bytes({'model': state})
    with pytest.raises(RuntimeError, match=r'Missing key\(s\).*head\.head_dist\.linear\.bias'):
        timm.create_model('recnext_m0', pretrained=True)


def test_pretrained_file_overlay_works_offline(m0_releases, tmp_path, hub_dir):
    path = tmp_path / 'local.pth'
    torch.save({'model': m0_releases['in1k']}, path)
    model = timm.create_model('recnext_m0', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert torch.equal(model.state_dict()['stem.stem.0.conv.weight'], m0_releases['in1k']['stem.stem.0.conv.weight'])
    assert not hub_dir.exists()


def config_backbone(config: str) -> dict:
    from mmengine.config import Config
    pytest.importorskip('mmdet')
    return Config.fromfile(str(ROOT / config)).model.backbone.to_dict()


def test_config_default_url_downloads_once_and_is_cached(server, hub_dir, monkeypatch):
    backbone_cfg = config_backbone('configs/recnext_m3_coco.py')
    url = backbone_cfg['init_cfg']['checkpoint']
    assert url == f'{RECNEXT}/v1.0/recnext_m3_distill_300e.pth'
    serve_releases_from(server, monkeypatch, 'recnext_m3')
    classifier = timm.create_model('recnext_m3')
    release = random_state(classifier, seed=3)
    path = url.replace('https://github.com', '')
    server.files[path] = torch_bytes({'model': release})
    backbone_cfg['init_cfg']['checkpoint'] = url.replace('https://github.com', server.url)
    backbone_cfg.pop('type')
    for _ in range(2):
        backbone = RecNeXtBackbone(**backbone_cfg)
        backbone.init_weights()
        # the loader drops the classifier head and loads everything else
        loaded = backbone.state_dict()
        assert set(release) - set(loaded) == {k for k in release if k.startswith('head.')}
        assert all(torch.equal(loaded[k], release[k]) for k in loaded)
    assert server.requests[path] == 1
    assert [p.name for p in hub_dir.iterdir()] == ['recnext_m3_distill_300e.pth']


@pytest.mark.parametrize('failure', ['refused', 'truncated', '404'])
def test_failed_download_is_one_line_and_leaves_no_cache_file(failure, server, hub_dir):
    server.files['/x/recnext_m0_distill_300e.pth'] = torch_bytes({'model': {'w': torch.zeros(1000)}})
    if failure == 'refused':
        with socket.socket() as s:  # a port nobody listens on
            s.bind(('127.0.0.1', 0))
            url = f'http://127.0.0.1:{s.getsockname()[1]}/x/recnext_m0_distill_300e.pth'
    else:
        url = server.url + {'truncated': '/truncated/x/recnext_m0_distill_300e.pth', '404': '/x/missing.pth'}[failure]
    with pytest.raises(hub.DownloadError) as raised:
        RecNeXtBackbone('m0', init_cfg=dict(type='Pretrained', checkpoint=url)).init_weights()
    message = str(raised.value)
    assert '\n' not in message
    assert message.startswith(f'cannot download {url}: ')
    assert {'refused': 'refused', 'truncated': 'truncated', '404': 'HTTP error 404'}[failure] in message
    assert message.endswith('offline: download it elsewhere and pass its path with --cfg-options '
                            'model.backbone.init_cfg.checkpoint=PATH (or a file made by convert_to_backbone_weights)')
    assert not hub_dir.exists() or list(hub_dir.iterdir()) == []


def test_hash_in_the_file_name_is_checked(server, hub_dir):
    body = torch_bytes({'w': torch.ones(3)})
    digest = hashlib.sha256(body).hexdigest()
    server.files[f'/w-{digest[:8]}.pth'] = body
    server.files['/w-deadbeef.pth'] = body
    good = f'{server.url}/w-{digest[:8]}.pth'
    assert Path(hub.download(good)).read_bytes() == body
    with pytest.raises(hub.DownloadError, match=r'sha256 [0-9a-f]{8} does not match the deadbeef in its name'):
        hub.download(f'{server.url}/w-deadbeef.pth')
    assert [p.name for p in hub_dir.iterdir()] == [Path(hub.cached_path(good)).name]


def test_urls_with_the_same_file_name_are_cached_apart(server, hub_dir):
    """Training runs publish the same names (epoch_12.pth) for different files (issue 22 item 6)."""
    first, second = (torch_bytes({'w': torch.full((3,), float(i))}) for i in (1, 2))
    server.files['/a/epoch_12.pth'], server.files['/b/epoch_12.pth'] = first, second
    urls = [f'{server.url}/a/epoch_12.pth', f'{server.url}/b/epoch_12.pth']
    for _ in range(2):  # the second round is served from the cache
        assert [Path(hub.download(url)).read_bytes() for url in urls] == [first, second]
    assert server.requests == Counter({'/a/epoch_12.pth': 1, '/b/epoch_12.pth': 1})
    names = sorted(p.name for p in hub_dir.iterdir())
    assert len(names) == 2 and all(re.fullmatch(r'epoch_12\.url[0-9a-f]{12}\.pth', n) for n in names), names
    # the key is the whole URL, query included; the file name and extension stay readable
    assert hub.cached_path(urls[0] + '?x=1') != hub.cached_path(urls[0])


def test_release_files_keep_their_names_in_the_cache(hub_dir):
    """timm's and torch's cache convention: a release lies under its own file name."""
    for url in registry.release_urls():
        assert hub.cached_path(url) == str(hub_dir / url.rsplit('/', 1)[1])
    assert registry.release_urls()


@pytest.mark.parametrize('family', sorted(PUBLISHED))
def test_a_familys_releases_are_exactly_its_published_files(family):
    record = registry.family(family)
    releases = {url for release in record.releases for url in release.urls()}
    assert releases == PUBLISHED[family]
    # and the lookups by model give the same files
    table = {url for model in record.models
             for url in [registry.classifier_url(model, tag) for tag in TAG_FILES]
             + [registry.downstream_url(model, task) for task in zoo.DOWNSTREAM_TASKS] if url}
    assert table == releases


def test_every_url_in_configs_and_timm_cfgs_is_a_release():
    released = registry.release_urls()
    config_urls = {url for path in (ROOT / 'configs').rglob('*.py') for url in URL_IN_TEXT.findall(path.read_text())}
    assert config_urls, 'no URL found in configs/'
    assert config_urls <= released, sorted(config_urls - released)
    tagged = {name: timm.models.get_pretrained_cfg(name).url for model in registry.model_names()
              for name in timm.list_pretrained(f'{model}.*')}
    timm_urls = {url for url in tagged.values() if url}
    assert timm_urls <= released, sorted(timm_urls - released)
    # every released classifier is reachable by a tag, the family's own
    classifiers = {url for record in registry.families() for model in record.models
                   for url in record.tags(model).values()}
    assert classifiers and classifiers == timm_urls
    assert all(tagged[f'{model}.{tag}'] == url for record in registry.families() for model in record.models
               for tag, url in record.tags(model).items())


def test_timm_cfgs_use_the_authors_eval_preprocessing():
    cfg = timm.models.get_pretrained_cfg('recnext_m3.in1k')
    assert (cfg.crop_pct, cfg.interpolation, cfg.input_size) == (0.875, 'bicubic', (3, 224, 224))
    assert timm.models.get_pretrained_cfg('recnext_m3').tag == 'dist_in1k'
    released = {name.split('.')[0] for name in timm.list_pretrained('recnext_*') + timm.list_pretrained('repnext_*')}
    assert released == {f'recnext_{arch}' for arch in RECNEXT_ARCHS} | {f'repnext_{arch}' for arch in REPNEXT_ARCHS}
    assert timm.models.get_pretrained_cfg('repnext_m3').tag == 'dist_in1k'
