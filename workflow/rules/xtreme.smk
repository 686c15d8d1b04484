# The XTREME track (NoisyTune Table 3): one run per (model, task, setting, method, seed) under XTREME_RUN,
# each scoring every language of its task -> xtreme.csv -> the noisytune/table3 artifact in the report.
# BUCC and Tatoeba train nothing: they read the encoder the XNLI run of the same model, setting, method
# and seed saved (`encoder/`, a side file of that run; its metrics.json is written after it).

localrules:
    collect_xtreme,


rule xtreme_train:
    output:
        metrics=f"{XTREME_RUN}/metrics.json",
    log:
        "logs/xtreme/{model}/{task}/{setting}/{method}/seed{seed}-{key}.log",
    benchmark:
        f"{BENCHMARKS}/xtreme_train/{{model}}/{{task}}/{{setting}}/{{method}}/seed{{seed}}-{{key}}.tsv"
    wildcard_constraints:
        task="xnli|pawsx|udpos|panx|xquad|mlqa|tydiqa",
    params:
        method_args=xtreme_method_arguments,
        data_dir=xtreme_data_dir,
        cache_dir=config["cache_dir"],
        offline_env=OFFLINE_ENV,
    group:
        pack_group("xtreme_train")  # several runs per cluster job: config `pack` (common.smk)
    threads: config["threads"]
    resources:
        **run_gpu_resources(XTREME_BLOCK["gpus_per_run"], "xtreme_train"),
    conda:
        ENV
    shell:
        "{params.offline_env}exec python -m robustft launch --gpus {resources.gpu} --"
        " train-xtreme --model {wildcards.model} --task {wildcards.task} --setting {wildcards.setting}"
        " --method {wildcards.method} --seed {wildcards.seed} --out $(dirname {output.metrics})"
        " --data-dir {params.data_dir} --cache-dir {params.cache_dir} --threads {threads}"
        " {params.method_args} > {log} 2>&1"


rule xtreme_retrieve:
    input:
        xnli=xtreme_encoder_run,
    output:
        metrics=f"{XTREME_RUN}/metrics.json",
    log:
        "logs/xtreme/{model}/{task}/{setting}/{method}/seed{seed}-{key}.log",
    benchmark:
        f"{BENCHMARKS}/xtreme_retrieve/{{model}}/{{task}}/{{setting}}/{{method}}/seed{{seed}}-{{key}}.tsv"
    wildcard_constraints:
        task="bucc2018|tatoeba",
    params:
        method_args=xtreme_method_arguments,
        data_dir=xtreme_data_dir,
        cache_dir=config["cache_dir"],
        offline_env=OFFLINE_ENV,
    threads: config["threads"]
    resources:
        gpu=min(XTREME_BLOCK["gpus_per_run"], 1),
    conda:
        ENV
    shell:
        "{params.offline_env}exec python -m robustft retrieve-xtreme --model {wildcards.model}"
        " --task {wildcards.task} --setting {wildcards.setting} --method {wildcards.method}"
        " --seed {wildcards.seed} --out $(dirname {output.metrics})"
        " --encoder-dir $(dirname {input.xnli})/encoder --data-dir {params.data_dir}"
        " --cache-dir {params.cache_dir} --threads {threads} {params.method_args} > {log} 2>&1"


rule collect_xtreme:
    input:
        [xtreme_run_metrics(*run) for run in XTREME_GRID],
    output:
        table=table_report(f"{TABLES}/xtreme.csv", "xtreme.rst", "XTREME track"),
        curves=table_report(f"{TABLES}/xtreme_curves.csv", "xtreme-curves.rst", "XTREME track"),
        grid=GRID_MANIFEST["xtreme"],
    log:
        f"logs/collect_xtreme/{NAME}.log",
    params:
        run_dirs=lambda wildcards, input: [str(Path(path).parent) for path in input],
    conda:
        ENV
    shell:
        "python -m robustft collect-xtreme --out {output.table} {params.run_dirs} > {log} 2>&1"
