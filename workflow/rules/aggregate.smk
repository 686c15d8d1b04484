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
        "logs/aggregate.log",
    params:
        baseline=config["report"]["baseline"],
    conda:
        ENV
    shell:
        "python -m robustft aggregate --runs {RUNS} --out {TABLES} --baseline {params.baseline}"
        " {input} > {log} 2>&1"
