"""Layer 7, suites: benchmark suites declared in TOML, run cell by cell, analysed and reported.

    problems.py   problems located in the file (``file:line: key: message``)
    schema.py     the file's keys as typed options, generated from the sampler and analysis specs
    resolve.py    where models and data sets come from: the registries or a named module file
    validate.py   every section checked against the schema before anything runs
    spec.py       Suite and Cell records, loading, expansion into cells (cases x grid x seeds)
    analyses.py   what each cell computes, with typed options
    runner.py     running cells into an output folder, resumably (executors)
    figures.py    the figures of one cell;  store.py  atomic JSON files
    report.py     report.html, summary.json and summary.md of an output folder
    cli.py        ``fractalbayes run | report | demo``

Nothing below imports from here.
"""
