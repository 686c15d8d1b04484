# Every run of the configured grid -> runs.csv, summary.csv, comparisons.csv (+ LaTeX).

localrules:
    aggregate,


rule aggregate:
    input:
        all_run_metrics(),
    output:
        runs=f"{TABLES}/runs.csv",
        summary=f"{TABLES}/summary.csv",
        comparisons=f"{TABLES}/comparisons.csv",
    log:
        f"logs/aggregate/{NAME}.log",
    params:
        runs=runs_root,
        tables=tables_dir,
        baseline=config["report"]["baseline"],
    conda:
        ENV
    shell:
        "python -m robustft aggregate --runs {params.runs} --out {params.tables}"
        " --baseline {params.baseline} {input} > {log} 2>&1"
