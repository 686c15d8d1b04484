# Every run of the configured grid -> runs.csv, summary.csv, comparisons.csv (+ LaTeX), curves.csv.
# The command reads exactly the config's runs, named from the resolved config (thousands of paths would
# overflow a shell command line).

localrules:
    aggregate,


rule aggregate:
    input:
        all_run_metrics(),
    output:
        # table_report(): each table in `snakemake --report`, captioned with the config and its runs.
        runs=table_report(f"{TABLES}/runs.csv", "runs.rst", "GLUE track"),
        summary=table_report(f"{TABLES}/summary.csv", "summary.rst", "GLUE track"),
        comparisons=table_report(f"{TABLES}/comparisons.csv", "comparisons.rst", "GLUE track"),
        curves=table_report(f"{TABLES}/curves.csv", "curves-table.rst", "GLUE track"),
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
