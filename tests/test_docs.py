"The documentation site: built offline by `make docs` and checked in a real browser (headless Chromium)."
import functools, http.server, os, shutil, subprocess, sys, threading, time
from pathlib import Path
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
ARTEFACTS = Path(os.environ.get('HYBRID_XIR_ARTEFACTS', ROOT/'test-artefacts'))
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')/'site'
    t0 = time.time()
    r = subprocess.run([sys.executable, 'scripts/build_docs.py', '--site', str(out)], cwd=ROOT, capture_output=True, text=True)
    dt = time.time() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert dt < 120, f'make docs took {dt:.0f} s'
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    (ARTEFACTS/'docs_build.txt').write_text(f'{r.stdout.strip()}\nwall time {dt:.1f} s\n')
    return out


def test_site_pages_are_all_there_and_local(site):
    "One page per library notebook (named after its module), the templates, the reports, the results; no remote asset."
    mods = [p.stem for p in (ROOT/'hybrid_xir').glob('*.py') if not p.stem.startswith('_')]
    assert all((site/f'{m}.html').exists() and (site/f'{m}.html.md').exists() for m in mods), mods
    assert (site/'experiments'/'eval.html').exists() and (site/'reports'/'reports.html').exists()
    res = (site/'results.html').read_text()
    assert '<table' in res and 'rank_distance.png' in res
    assert (site/'assets'/'mathjax'/'MathJax.js').exists()
    for f in site.rglob('*.html'):
        s = f.read_text()
        assert 'cdnjs.cloudflare.com' not in s and 'fonts.googleapis' not in s, f


@pytest.mark.skipif(CHROMIUM is None, reason='no Chromium here (.ci/run installs Debian chromium)')
def test_site_in_a_real_browser(site):
    """Headless Chromium loads the index, the sampler page and the grid's report from 127.0.0.1: API signature blocks,
    kept outputs, a rendered table and a figure; no request leaves 127.0.0.1 and the console has no errors."""
    from playwright.sync_api import sync_playwright
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{srv.server_port}/'
    shots = ARTEFACTS/'screenshots'; shots.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            page = browser.new_page(viewport=dict(width=1280, height=900))
            requests, errors = [], []
            page.on('request', lambda r: requests.append(r.url))
            page.on('console', lambda m: errors.append(f'{page.url}: {m.text}') if m.type == 'error' else None)
            page.on('pageerror', lambda e: errors.append(f'{page.url}: {e}'))
            for name, path in [('index', 'index.html'), ('sampler', 'sampler.html'), ('reports', 'reports/reports.html')]:
                page.goto(base + path, wait_until='networkidle')
                page.screenshot(path=str(shots/f'{name}.png'), full_page=False)
                if name == 'index':
                    assert page.locator('h1').first.inner_text().strip().rstrip('¶') == 'hybrid_xir'
                    assert page.locator('article table').count() >= 1            # the headline table
                if name == 'sampler':
                    sig = page.locator('pre', has_text='def HybridBatchSampler(')
                    assert sig.count() >= 1 and sig.first.is_visible()         # an API signature block
                    out = page.locator('.jp-OutputArea-output', has_text='cross [')
                    assert out.count() >= 1 and out.first.is_visible()         # a kept output: a printed batch plan
                if name == 'reports':
                    tables = page.locator('.jp-OutputArea-output table')
                    assert tables.count() >= 1 and tables.first.locator('tr').count() >= 5
                    img = page.locator('.jp-OutputArea-output img').first
                    img.scroll_into_view_if_needed()
                    assert img.evaluate('i => i.complete && i.naturalWidth > 100')
                    page.screenshot(path=str(shots/'reports_figure.png'))
            browser.close()
    finally:
        srv.shutdown()
    outside = [u for u in requests if not u.startswith(base) and not u.startswith(('data:', 'blob:'))]
    assert not outside, outside[:10]
    assert not errors, errors[:10]
    assert {'index.png', 'sampler.png', 'reports.png'} <= {p.name for p in shots.glob('*.png')}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a): pass
