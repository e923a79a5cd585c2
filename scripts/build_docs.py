"""Build the documentation site from the notebooks, offline: `make docs` (or `python scripts/build_docs.py`).

1. nbdev processes the notebooks in `nbs/` (API signature blocks from `show_doc`; its Quarto directives are then turned
   into what MkDocs understands);
2. the pages are staged in `_docs/`: the index (the README), the user guide and findings (`docs/*.md`), the results
   page (generated from `reports/` by `hybrid_xir.reports.results_page`, like the README's headline), one page per
   library notebook named after its module (`sampler.html`, the address the module docstrings link to), the experiment
   notebook templates and the executed reports in `reports/`;
3. MkDocs Material with mkdocs-jupyter builds `site/`;
4. every asset is local: MathJax is copied from the `jupyter-server-mathjax` package, nbconvert's CDN scripts are
   rewritten or removed, and the build fails if any page still loads something from another host.

Progress bars stored in older executed notebooks (tqdm carriage-return updates, the "IProgress not found" warning) are
reduced to their final line per output, so the published reports read cleanly.
"""
import argparse, json, os, re, shutil, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SITE_URL = 'https://hybrid-xir.github.io/hybrid_xir/'
TEMPLATES = ['eval', 'train', 'augment', 'eval_retrieval', 'reports', 'bench', 'bench_train']
MATHJAX_PLACEHOLDER = 'HYBRID_XIR_MATHJAX/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe'
# what a browser fetches by itself: src= of any element, href= of <link> elements other than canonical/alternate, url() in styles
_HOST = r'''["'(]\s*(?:https?:)?//(?!127\.0\.0\.1|localhost)([^"'/)\s]+)'''
MATHJAX_FONTS = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({"HTML-CSS": {availableFonts: [], '
                 'preferredFont: null, webFont: null, imageFont: null}});</script>\n')
EXTERNAL = re.compile(r'''(?:\bsrc\s*=\s*|<link\b(?![^>]*rel="?(?:canonical|alternate))[^>]*\bhref\s*=\s*|url)''' + _HOST)


def _frontmatter(cell):
    "title and description from nbdev's front-matter raw cell."
    import yaml
    s = ''.join(cell['source']).strip()
    return yaml.safe_load(s.strip('-').strip()) or {} if s.startswith('---') else {}


def _strip_progress(text):
    "Keep the final state of carriage-return progress updates; drop tqdm's IProgress warning."
    lines = []
    for line in text.split('\n'):
        if '\r' in line: line = [p for p in line.split('\r') if p.strip()][-1:] and [p for p in line.split('\r') if p.strip()][-1] or ''
        lines.append(line)
    out = '\n'.join(lines)
    out = re.sub(r'[^\n]*TqdmWarning: IProgress not found[^\n]*\n(?:\s+from \.autonotebook[^\n]*\n)?', '', out)
    return out


def clean_outputs(nb):
    """Make an executed notebook read cleanly: progress-bar streams reduced to their last line per stage, empty streams
    dropped."""
    for c in nb['cells']:
        if c['cell_type'] != 'code': continue
        outs, bar = [], None
        for o in c.get('outputs', []):
            if o.get('output_type') == 'stream':
                t = _strip_progress(''.join(o['text']) if isinstance(o['text'], list) else o['text'])
                is_bar = bool(re.search(r'\d+%\|', t)) and t.count('\n') <= 2
                if is_bar:                           # consecutive bar updates: keep the last one
                    if bar is not None and outs and outs[-1] is bar: outs.pop()
                    o['text'] = t.strip('\n') + '\n'; bar = o
                else:
                    if not t.strip(): continue
                    o['text'] = t; bar = None
            outs.append(o)
        c['outputs'] = outs
    return nb


def quarto_to_mkdocs(nb, title=None):
    """nbdev's processed notebook, made readable by mkdocs-jupyter: the front matter becomes the page title and
    description, `#| echo: false` cells keep only their output, other `#|` directives and Quarto link attributes go."""
    cells, fm = [], {}
    for i, c in enumerate(nb['cells']):
        s = ''.join(c['source'])
        if i == 0 and c['cell_type'] == 'raw': fm = _frontmatter(c); continue
        if c['cell_type'] == 'raw': continue
        if c['cell_type'] == 'code':
            lines = s.split('\n')
            dirs = [l for l in lines if l.startswith('#|')]
            body = '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')
            tags = set(c.get('metadata', {}).get('tags', []))
            if any(re.match(r'#\|\s*(echo:\s*false|hide)', d) for d in dirs) or c.get('metadata', {}).get('transient', {}).get('remove_source'):
                tags.add('remove_input')
            if any(re.match(r'#\|\s*(include:\s*false)', d) for d in dirs): continue
            if not body and not c.get('outputs'): continue
            c['source'] = body; c.setdefault('metadata', {})['tags'] = sorted(tags)
            for o in c.get('outputs', []):
                md = o.get('data', {}).get('text/markdown')
                if md is not None:
                    md = ''.join(md) if isinstance(md, list) else md
                    md = re.sub(r'\)\{target="_blank"[^}]*\}', ')', md)
                    o['data']['text/markdown'] = md
                    o['data'].pop('text/plain', None)
        keep = ('cell_type', 'id', 'metadata', 'source') + (('execution_count', 'outputs') if c['cell_type'] == 'code' else ('attachments',))
        c = {k: v for k, v in c.items() if k in keep}
        c['metadata'] = {k: v for k, v in c.get('metadata', {}).items() if k == 'tags'}
        cells.append(c)
    head = f"# {title or fm.get('title', '')}\n" + (f"\n> {fm['description']}\n" if fm.get('description') else '')
    nb['cells'] = [dict(cell_type='markdown', id='page-title', metadata={}, source=head)] + cells
    return nb


def _page_name(nb_path):
    "The page a library notebook becomes: its module name (`nbs/06_sampler.ipynb` → `sampler`)."
    for c in json.loads(Path(nb_path).read_text())['cells']:
        m = re.search(r'#\|\s*default_exp\s+(\S+)', ''.join(c['source']))
        if m: return m.group(1)
    return None


def _local_links(md):
    "Links to the published site become links between the staged pages."
    return re.sub(re.escape(SITE_URL) + r'([\w-]+)\.html', r'\1.md', md).replace(f'({SITE_URL})', '(index.md)').replace(f'<{SITE_URL}>', '[the site](index.md)')


def stage(out=ROOT/'_docs', proc=True):
    "Stage every page in `out`; returns the MkDocs nav."
    sys.path.insert(0, str(ROOT))
    from hybrid_xir.reports import results_page
    if proc:
        from nbdev.quarto import proc_nbs
        proc_nbs(str(ROOT/'nbs'), n_workers=2)
    if out.exists(): shutil.rmtree(out)
    (out/'experiments').mkdir(parents=True); (out/'reports').mkdir()
    (out/'index.md').write_text(_local_links((ROOT/'README.md').read_text()))
    for p in sorted((ROOT/'docs').glob('*.md')): (out/p.name).write_text(_local_links(p.read_text()))
    (out/'results.md').write_text(_local_links(results_page(str(ROOT/'reports'/'eval')).replace(str(ROOT) + '/', '')))
    for p in list((ROOT/'reports').glob('figures/*.png')) + list((ROOT/'reports').glob('eval/*/*/*.png')):
        d = out/p.relative_to(ROOT); d.parent.mkdir(parents=True, exist_ok=True); shutil.copy2(p, d)
    api, templates, reports = [], [], []
    for src in sorted((ROOT/'nbs').glob('[0-9]*.ipynb')):
        name = _page_name(src)
        nb = quarto_to_mkdocs(json.loads((ROOT/'_proc'/src.name).read_text()))
        (out/f'{name}.ipynb').write_text(json.dumps(nb))     # at the site's root: the address module docstrings link to
        api.append({name: f'{name}.ipynb'})
    for t in TEMPLATES:
        nb = quarto_to_mkdocs(json.loads((ROOT/'_proc'/f'{t}.ipynb').read_text()))
        (out/'experiments'/f'{t}.ipynb').write_text(json.dumps(nb)); templates.append({t: f'experiments/{t}.ipynb'})
    for p in sorted((ROOT/'reports').glob('*.ipynb')):
        nb = clean_outputs(json.loads(p.read_text()))
        nb['cells'] = [c for c in nb['cells'] if c['cell_type'] != 'raw']      # the template's front matter
        (out/'reports'/p.name).write_text(json.dumps(nb)); reports.append({p.stem: f'reports/{p.name}'})
    reports.sort(key=lambda d: (next(iter(d)) != 'reports', next(iter(d))))     # the grid's report first
    return [{'Home': 'index.md'}, {'User guide': 'guide.md'}, {'Results': 'results.md'}, {'What the results say': 'findings.md'},
            {'API (library notebooks)': api}, {'Experiment notebooks': templates}, {'Executed reports': reports}]


def localise(site):
    "Point MathJax at the local copy, drop nbconvert's mermaid CDN scripts; returns the external loads left (host, file)."
    import jupyter_server_mathjax
    mj = Path(jupyter_server_mathjax.__file__).parent/'static'
    shutil.copytree(mj, site/'assets'/'mathjax', dirs_exist_ok=True, ignore=shutil.ignore_patterns('localization', '*.md'))
    left = []
    for f in site.rglob('*.html'):
        s = f.read_text()
        rel = os.path.relpath(site/'assets'/'mathjax', f.parent)
        # the local MathJax (jupyter-server-mathjax) carries the STIX-Web fonts only: say so before MathJax starts
        s2 = s.replace(f'<script src="HYBRID_XIR_MATHJAX', MATHJAX_FONTS + f'<script src="HYBRID_XIR_MATHJAX').replace('HYBRID_XIR_MATHJAX', rel)
        s2 = re.sub(r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded", async \(\) => \{.*?mermaid.*?</script>', '', s2, flags=re.S)
        s2 = re.sub(r'<script[^>]*src="https://cdnjs\.cloudflare\.com/ajax/libs/mermaid[^"]*"[^>]*>\s*</script>', '', s2)
        if s2 != s: f.write_text(s2)
        left += [(m.group(1), str(f.relative_to(site))) for m in EXTERNAL.finditer(re.sub(r'<a\s[^>]*>', '', s2))]
    return left


def markdown_copies(site, pages):
    "`<module>.html.md` beside each API page: the page as Markdown, the address nbdev writes into module docstrings."
    from nbconvert import MarkdownExporter
    ex = MarkdownExporter(exclude_output_prompt=True, exclude_input_prompt=True)
    for p in pages:
        body, _ = ex.from_filename(str(ROOT/'_docs'/p))
        (site/(Path(p).stem + '.html.md')).write_text(body)


def build(site=ROOT/'site', proc=True):
    t0 = time.time()
    nav = stage(proc=proc)
    import yaml
    cfg = dict(INHERIT=str(ROOT/'mkdocs.yml'), docs_dir=str(ROOT/'_docs'), site_dir=str(site), nav=nav)
    (ROOT/'_docs.yml').write_text(yaml.safe_dump(cfg, sort_keys=False))
    r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '-q', '-f', str(ROOT/'_docs.yml')], cwd=ROOT, capture_output=True, text=True)
    if r.returncode: sys.exit(f'mkdocs build failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}')
    left = localise(site)
    markdown_copies(site, [next(iter(d.values())) for d in nav[4]['API (library notebooks)']])
    if left: sys.exit('pages load assets from other hosts: ' + ', '.join(sorted({f'{h} ({p})' for h, p in left})[:20]))
    size = sum(f.stat().st_size for f in site.rglob('*') if f.is_file())
    print(f'site built in {time.time() - t0:.0f} s: {site} ({size / 2**20:.1f} MiB, {len(list(site.rglob("*.html")))} pages)')


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--site', default=str(ROOT/'site'), help='output directory (default: site/)')
    ap.add_argument('--no-proc', action='store_true', help="reuse nbdev's processed notebooks in _proc/ (faster rebuilds)")
    a = ap.parse_args()
    build(Path(a.site), proc=not a.no_proc)
