# Tables -> PDF: our numbers beside the paper's, with CIs, tests, verdicts and provenance.

localrules:
    artifact,
    report,


# One paper table or figure, regenerated from runs.csv (robustft.artifacts); "not run" if its runs are absent.
rule artifact:
    input:
        table=artifact_table,
    output:
        claims=report(
            f"{ARTIFACTS}/{{paper}}/{{artifact}}/claims.csv",
            caption="../report/claims.rst",
            category=artifact_paper,
            subcategory=artifact_name,
            labels=artifact_labels,
        ),
        result=f"{ARTIFACTS}/{{paper}}/{{artifact}}/result.json",
        # The whole folder too: figure.svg and appendix.csv exist only for the artifacts that have them, so
        # no rule can promise them as files; the report takes those present (none is ever drawn empty).
        # Snakemake allows a job's files inside its own folder output.
        folder=report(
            directory(f"{ARTIFACTS}/{{paper}}/{{artifact}}"),
            patterns=[r"{file,figure\.svg|appendix\.csv}"],
            caption="../report/artifact-files.rst",
            category=artifact_paper,
            subcategory=artifact_name,
            labels=artifact_labels,
        ),
    log:
        f"logs/artifact/{NAME}/{{paper}}/{{artifact}}.log",
    params:
        tables=lambda wildcards, input: str(Path(input.table).parent),
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
        " --out {output.folder} > {log} 2>&1"


rule report:
    input:
        report_tables(),
        grids=report_grid_manifests(),
        artifacts=[
            f"{ARTIFACTS}/{key}/result.json" for key in artifacts_of("runs") + artifacts_of("xtreme")
        ],
    output:
        # report(): `snakemake --report report.zip` carries the PDF (.snakemake-workflow-catalog.yml) and the
        # figures worth browsing: the learning curves (PNG; the PDFs beside them are the same figures) and
        # the levels and effects figures (the folder's other files are the typesetter's copies and data).
        pdf=report(report_pdf(), caption="../report/report-pdf.rst", category="Reports"),
        curves=report(
            directory(f"results/reports/{config['report']['name']}/curves"),
            patterns=[
                "glue_{model,[^_]+}_{task,[^_]+}.png",
                "xtreme_{model,[^_]+}_{setting,[^_]+}_{task,[^_]+}.png",
            ],
            caption="../report/learning-curves.rst",
            category="Figures",
            subcategory=curve_track,
            labels=curve_labels,
        ),
        figures=report(
            directory(f"figures/{config['report']['name']}"),
            patterns=[f"{config['report']['name']}_{{figure,levels|effects}}.svg"],
            caption="../report/report-figures.rst",
            category="Figures",
            subcategory="Scores and effects",
            labels={"figure": "{figure}"},
        ),
    log:
        f"logs/report/{config['report']['name']}.log",
    params:
        tables=tables_dir_of_input,
        spec=report_spec_json,
        config_hash=workflow_config_hash,
        workflow_config=workflow_config_json,
        artifacts=lambda wildcards, input: [str(Path(path).parent) for path in input.artifacts],
    conda:
        ENV
    shell:
        # A config without learning curves gets an empty curves folder: Snakemake removed the old one.
        "mkdir -p {output.curves} && python -m robustft report --tables {params.tables} --spec {params.spec:q}"
        " --config-hash {params.config_hash} --workflow-config {params.workflow_config:q} --figures {output.figures} --out {output.pdf}"
        " --artifacts {params.artifacts} > {log} 2>&1"
