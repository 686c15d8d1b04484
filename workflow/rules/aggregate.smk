# Every run of the configured grid -> runs.csv, summary.csv, comparisons.csv (+ LaTeX), curves.csv.
# The command reads exactly the config's runs, named from the resolved config (thousands of paths would
# overflow a shell command line).

localrules:
    aggregate,


rule aggregate:
    input:
        all_run_metrics(),
    output:
        runs=f"{TABLES}/runs.csv",
        summary=f"{TABLES}/summary.csv",
        comparisons=f"{TABLES}/comparisons.csv",
        curves=f"{TABLES}/curves.csv",
        grid=GRID_MANIFEST["runs"],
    log:
        f"logs/aggregate/{NAME}.log",
    params:
        tables=output_dir,
        baseline=config["report"]["baseline"],
        workflow_config=workflow_config_json,
    conda:
        ENV
    shell:
        "python -m robustft aggregate --out {params.tables}"
        " --baseline {params.baseline} --workflow-config {params.workflow_config:q} > {log} 2>&1"
