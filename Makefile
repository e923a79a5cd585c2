# Make targets beside the `hybrid-xir` command (run from the repository root).
.PHONY: reports aggregate readme test assets docs

# run every unfinished cell of reports/grid.toml (papermill; hours on a CPU, resumable), then rebuild tables, figures, README
reports:
	hybrid-xir reports
	papermill nbs/reports.ipynb reports/reports.ipynb -p aggregate_only True
	hybrid-xir readme

# rebuild reports/tables and reports/figures from the finished cells only (seconds)
aggregate:
	hybrid-xir reports --aggregate-only
	hybrid-xir readme

readme:
	hybrid-xir readme

test:
	python3 -m pytest

# copy the experiment notebooks and grid files into the package (they ship with it: `hybrid-xir notebooks DIR`)
assets:
	cp nbs/augment.ipynb nbs/eval.ipynb nbs/eval_retrieval.ipynb nbs/reports.ipynb nbs/train.ipynb nbs/bench.ipynb nbs/bench_train.ipynb hybrid_xir/assets/notebooks/
	cp reports/grid.toml reports/grid_paper.toml hybrid_xir/assets/grids/

# the documentation site from the notebooks, offline (MkDocs Material + mkdocs-jupyter; the dev extra has them): site/
docs:
	python3 scripts/build_docs.py
