# Make targets beside the `hybrid-xir` command (run from the repository root).
.PHONY: reports aggregate readme test

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
