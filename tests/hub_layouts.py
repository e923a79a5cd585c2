"""The hub layouts of the paper recipe's sources, written from their public cards and loader scripts, independently
of the package's own table (hybrid_xir.train_data.HUB_QA_SOURCES): a wrong repository, config, split, file or column
there makes the fixtures written from here unreadable to the package, and the tests that use them fail.

Pages read (2026-12): the cards of microsoft/wiki_qa, ibm/duorc, lucadiliello/newsqa, sentence-transformers/natural-questions
(one config, `pair`: query, answer), lmqg/qa_squadshifts (raw data/<domain>.<split>.jsonl; `all` = the four domains);
the loader scripts nfL6/yahoo_answers_qa/yahoo_answers_qa.py (a gzipped JSON array at ciir.cs.umass.edu),
castorini/mr-tydi/mr-tydi.py (mrtydi-v1.1-<lang>/<split>.jsonl.gz), clips/mfaq/mfaq.py (data/<lang>/train.jsonl, one FAQ
page a line), unicamp-dl/mmarco/mmarco.py (data/triples.train.ids.small.tsv; data/google/{queries/train,collections});
the dataset viewer's parquet docs (refs/convert/parquet: <config>/<split>/NNNN.parquet, partial-<split> over 5 GB)."""
import gzip, json
from pathlib import Path
import pandas as pd

def q(i, lang='en'): return f"{lang} question {i}: where does the entity numbered {i} live today?"
def a(i, lang='en'): return f"{lang} answer: the entity numbered {i} lives in town {i % 7}."
def ctx(i): return f"This passage is about entity {i}. {a(i)} Nothing else is known about it."

# name: (repository, where (parquet config/split, or raw files / url), rows(n) in the card's columns)
LAYOUTS = {
    'wikiqa': ('microsoft/wiki_qa', dict(parquet=('default', 'train')),
               lambda n: [dict(question_id=f'Q{i}', question=q(i), document_title=f'E{i}', answer=x, label=l)
                          for i in range(n) for x, l in [(a(i), 1), (f'Entity {i} exists.', 0)]]),
    'duorc': ('ibm/duorc', dict(parquet=('SelfRC', 'train')),
              lambda n: [dict(plot_id=f'p{i}', plot=ctx(i), title=f'F{i}', question_id=f'd{i}', question=q(i),
                              answers=[f'town {i % 7}'], no_answer=False) for i in range(n)]),
    'newsqa': ('lucadiliello/newsqa', dict(parquet=('default', 'train')),
               lambda n: [dict(context=ctx(i), question=q(i), answers=[f'town {i % 7}'], key=f'n{i}',
                               labels=[dict(start=[0], end=[1])]) for i in range(n)]),
    'nq': ('sentence-transformers/natural-questions', dict(parquet=('pair', 'train')),
           lambda n: [dict(query=q(i), answer=ctx(i)) for i in range(n)]),
    'yahoo_qa': ('nfL6/yahoo_answers_qa', dict(url='nfL6.json.gz'),
                 lambda n: [dict(id=f'y{i}', question=q(i), answer=a(i), nbestanswers=[a(i)], main_category='Science') for i in range(n)]),
    'mrtydi': ('castorini/mr-tydi', dict(files=['mrtydi-v1.1-english/train.jsonl.gz']),
               lambda n: [dict(query_id=f'm{i}', query=q(i), positive_passages=[dict(docid=f'{i}#0', title='T', text=ctx(i))],
                               negative_passages=[dict(docid=f'{i}#1', title='T', text=ctx(i + 1))]) for i in range(n)]),
    'mfaq': ('clips/mfaq', dict(files=['data/en/train.jsonl']),
             lambda n: [dict(id=i, language='en', num_pairs=2, domain=f'site{i}.example',
                             qa_pairs=[dict(question=q(100 + 2 * i + j), answer=a(100 + 2 * i + j), language='en') for j in range(2)])
                        for i in range(n)]),
    'squadshifts': ('lmqg/qa_squadshifts', dict(files=[f'data/{d}.validation.jsonl' for d in ('amazon', 'new_wiki', 'nyt', 'reddit')]),
                    lambda n: [dict(id=f'para{i // 2}', title='None', context=ctx(i), question=q(i),
                                    answers=dict(text=[f'town {i % 7}'], answer_start=[ctx(i).index(f'town {i % 7}')])) for i in range(n)]),
}
MMARCO = ('unicamp-dl/mmarco', {'en': 'english', 'ar': 'arabic', 'zh': 'chinese', 'de': 'german', 'es': 'spanish', 'ru': 'russian', 'hi': 'hindi'})

def write_source(root, name, rows):
    "Write `rows` of source `name` into the mirror `root` in its layout."
    repo, where, _ = LAYOUTS[name]
    base = Path(root)/repo
    if 'parquet' in where:
        d = base/where['parquet'][0]/where['parquet'][1]; d.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(rows).to_parquet(d/'0000.parquet')
        return
    files = [where['url']] if 'url' in where else where['files']
    for k, f in enumerate(files):
        part = rows[k::len(files)]
        body = json.dumps(part) if 'url' in where else ''.join(json.dumps(r) + '\n' for r in part)
        p = base/f; p.parent.mkdir(parents=True, exist_ok=True)
        if f.endswith('.gz'):
            with gzip.open(p, 'wt', encoding='utf-8') as g: g.write(body)
        else: p.write_text(body, encoding='utf-8')

def write_mmarco(root, n=40, triples_per_query=3):
    repo, langs = MMARCO
    r = Path(root)/repo/'data'
    (r/'google'/'queries'/'train').mkdir(parents=True, exist_ok=True); (r/'google'/'collections').mkdir(parents=True, exist_ok=True)
    (r/'triples.train.ids.small.tsv').write_text(''.join(f'{i}\t{1000 + i}\t{2000 + 10 * i + k}\n' for i in range(n) for k in range(triples_per_query)))
    for l, name in langs.items():
        (r/'google'/'queries'/'train'/f'{name}_queries.train.tsv').write_text(''.join(f'{i}\t{q(i, l)}\n' for i in range(n)), encoding='utf-8')
        (r/'google'/'collections'/f'{name}_collection.tsv').write_text(
            ''.join(f'{1000 + i}\t{a(i, l)}\n' for i in range(n)) + ''.join(f'{2000 + 10 * i + k}\t{l} other passage {i} {k}.\n'
                                                                         for i in range(n) for k in range(triples_per_query)), encoding='utf-8')

def write_models(root, models=('xlm-roberta-base', 'intfloat/multilingual-e5-base', 'facebook/nllb-200-distilled-600M')):
    "Model repositories as the preflight sees them: their config.json (an NLLB one for the translator)."
    for m in models:
        d = Path(root)/m; d.mkdir(parents=True, exist_ok=True)
        cfg = dict(model_type='m2m_100') if 'nllb' in m else dict(model_type='xlm-roberta')
        (d/'config.json').write_text(json.dumps(cfg))
        if 'nllb' in m: (d/'tokenizer_config.json').write_text(json.dumps(dict(tokenizer_class='NllbTokenizer')))

def write_all(root, n=24):
    for name, (_, _, rows) in LAYOUTS.items(): write_source(root, name, rows(n))
    write_mmarco(root); write_models(root)
    return Path(root)

def write_miracl(root, langs=('sw',), n=6):
    "miracl/miracl topics and qrels, miracl/miracl-corpus passages, in the paths its loader scripts read."
    for l in langs:
        m = Path(root)/'miracl'/'miracl'/f'miracl-v1.0-{l}'
        (m/'topics').mkdir(parents=True, exist_ok=True); (m/'qrels').mkdir(exist_ok=True)
        (m/'topics'/f'topics.miracl-v1.0-{l}-dev.tsv').write_text(''.join(f'{i}\t{q(i, l)}\n' for i in range(n)), encoding='utf-8')
        (m/'qrels'/f'qrels.miracl-v1.0-{l}-dev.tsv').write_text(''.join(f'{i}\tQ0\t{i}#0\t1\n' for i in range(n)))
        c = Path(root)/'miracl'/'miracl-corpus'/f'miracl-corpus-v1.0-{l}'; c.mkdir(parents=True, exist_ok=True)
        with gzip.open(c/'docs-0.jsonl.gz', 'wt', encoding='utf-8') as f:
            f.writelines(json.dumps(dict(docid=f'{i}#0', title=f'T{i}', text=a(i, l))) + '\n' for i in range(n))
