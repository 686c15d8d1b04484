# Tables -> PDF: our numbers beside the paper's, with CIs, tests, verdicts and provenance.

localrules:
    artifact,
    report,


# One paper table or figure, regenerated from runs.csv (robustft.artifacts); "not run" if its runs are absent.
rule artifact:
    input:
        table=artifact_table,
    output:
        claims=f"{ARTIFACTS}/{{paper}}/{{artifact}}/claims.csv",
        result=f"{ARTIFACTS}/{{paper}}/{{artifact}}/result.json",
    log:
        f"logs/artifact/{NAME}/{{paper}}/{{artifact}}.log",
    params:
        tables=lambda wildcards, input: str(Path(input.table).parent),
        out=lambda wildcards, output: str(Path(output.result).parent),
        paper_model=artifact_paper_model,
        context=artifact_context,
        # One floor for every track's claims (the top-level report block; see docs/verdicts.md).
        min_seeds=config["report"]["min_seeds"],
    conda:
        ENV
    shell:
        "python -m robustft artifact --artifact {wildcards.paper}/{wildcards.artifact} --tables {params.tables}"
        " --paper-model {params.paper_model:q} --context {params.context:q}"
        " --min-seeds {params.min_seeds}"
        " --out {params.out} > {log} 2>&1"


rule report:
    input:
        report_tables(),
        grids=report_grid_manifests(),
        artifacts=[
            f"{ARTIFACTS}/{key}/result.json" for key in artifacts_of("runs") + artifacts_of("xtreme")
        ],
    output:
        # report(): `snakemake --report report.zip` carries the PDF (.snakemake-workflow-catalog.yml).
        pdf=report(report_pdf(), category="Reports"),
    log:
        f"logs/report/{config['report']['name']}.log",
    params:
        tables=tables_dir_of_input,
        spec=report_spec_json,
        config_hash=workflow_config_hash,
        workflow_config=workflow_config_json,
        artifacts=lambda wildcards, input: [str(Path(path).parent) for path in input.artifacts],
        figures=f"figures/{config['report']['name']}",
    conda:
        ENV
    shell:
        "python -m robustft report --tables {params.tables} --spec {params.spec:q}"
        " --config-hash {params.config_hash} --workflow-config {params.workflow_config:q} --figures {params.figures} --out {output.pdf}"
        " --artifacts {params.artifacts} > {log} 2>&1"
