# Tables -> PDF: our numbers beside the paper's, with CIs, tests, verdicts and provenance.

localrules:
    report,


rule report:
    input:
        rules.aggregate.output,
    output:
        pdf="results/reports/{name}.pdf",
    log:
        "logs/report/{name}.log",
    params:
        tables=tables_dir_of_input,
        spec=report_spec_json,
        config_hash=workflow_config_hash,
    conda:
        ENV
    shell:
        "python -m robustft report --tables {params.tables} --spec {params.spec:q}"
        " --config-hash {params.config_hash} --figures figures/{wildcards.name} --out {output.pdf} > {log} 2>&1"
