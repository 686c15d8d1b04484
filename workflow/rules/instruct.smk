# The instruction-tuning track (NEFTune): SFT -> generation -> judges -> lm-eval -> text statistics ->
# instruct.csv -> artifacts -> PDF, beside them the embedding analyses of Figures 6-8 (embedding_*.csv).
# One run is (model, dataset, recipe, method, seed) under INSTRUCT_RUN.
# Outputs that grow during a job (generations, judge cache) are side files: only their summaries are
# declared, so a killed job's partial work is kept (Snakemake deletes declared outputs of failed jobs)
# and the rerun continues from it.

localrules:
    collect_instruct,
    instruct_report,


rule sft:
    output:
        metrics=f"{INSTRUCT_RUN}/sft/metrics.json",
    log:
        "logs/sft/{model}/{dataset}/{recipe}/{method}/seed{seed}-{key}.log",
    benchmark:
        f"{BENCHMARKS}/sft/{{model}}/{{dataset}}/{{recipe}}/{{method}}/seed{{seed}}-{{key}}.tsv"
    params:
        method_args=sft_method_arguments,
        data_dir=config["data_dir"],
        cache_dir=config["cache_dir"],
        offline_env=OFFLINE_ENV,
    threads: config["threads"]
    resources:
        gpu=INSTRUCT_BLOCK["gpus_per_run"],
        **instruct_resources("sft"),
    conda:
        ENV
    shell:
        "{params.offline_env}exec python -m robustft launch --gpus {resources.gpu} --"
        " sft --model {wildcards.model} --dataset {wildcards.dataset} --recipe {wildcards.recipe}"
        " --method {wildcards.method} --seed {wildcards.seed} --out $(dirname {output.metrics})"
        " --data-dir {params.data_dir} --cache-dir {params.cache_dir} --threads {threads}"
        " {params.method_args} > {log} 2>&1"


rule generate:
    input:
        sft=rules.sft.output.metrics,
    output:
        summary=f"{INSTRUCT_RUN}/generations/{{prompts}}.summary.json",
    log:
        "logs/generate/{model}/{dataset}/{recipe}/{method}/seed{seed}-{key}/{prompts}.log",
    benchmark:
        f"{BENCHMARKS}/generate/{{model}}/{{dataset}}/{{recipe}}/{{method}}/seed{{seed}}-{{key}}/{{prompts}}.tsv"
    params:
        settings=GENERATION_SETTINGS,
        prompt_args=generation_prompt_arguments,
        data_dir=config["data_dir"],
        cache_dir=config["cache_dir"],
        offline_env=OFFLINE_ENV,
    threads: config["threads"]
    resources:
        gpu=min(INSTRUCT_BLOCK["gpus_per_run"], 1),
        **instruct_resources("generate"),
    conda:
        ENV
    shell:
        "{params.offline_env}python -m robustft generate --sft-dir $(dirname {input.sft})"
        " {params.prompt_args} --dataset {wildcards.dataset} --data-dir {params.data_dir}"
        " --cache-dir {params.cache_dir} --out $(dirname {output.summary})/{wildcards.prompts}.jsonl"
        " --max-new-tokens {params.settings[max_new_tokens]} --batch-size {params.settings[batch_size]}"
        " --repetition-penalty {params.settings[repetition_penalty]} --seed {wildcards.seed}"
        " --prompt-overflow {params.settings[prompt_overflow]} --dtype {params.settings[precision]}"
        " --threads {threads} > {log} 2>&1"


# A judge that runs a model (kind local_hf): a compute job, offline, on a GPU when the config has them.
rule judge:
    input:
        generations=f"{INSTRUCT_RUN}/generations/alpaca_eval.summary.json",
    output:
        result=f"{INSTRUCT_RUN}/judge/{{judge}}.json",
    log:
        "logs/judge/{model}/{dataset}/{recipe}/{method}/seed{seed}-{key}/{judge}.log",
    benchmark:
        f"{BENCHMARKS}/judge/{{model}}/{{dataset}}/{{recipe}}/{{method}}/seed{{seed}}-{{key}}/{{judge}}.tsv"
    params:
        judge_config=lambda wildcards: json.dumps(INSTRUCT_BLOCK["judges"][wildcards.judge]),
        data_dir=config["data_dir"],
        offline_env=OFFLINE_ENV,
    wildcard_constraints:
        judge=judge_names(needs_network=False),
    threads: config["threads"]
    resources:
        gpu=min(INSTRUCT_BLOCK["gpus_per_run"], 1),
        **instruct_resources("judge_model"),
    conda:
        ENV
    shell:
        "{params.offline_env}python -m robustft judge"
        " --generations $(dirname {input.generations})/alpaca_eval.jsonl"
        " --judge-config {params.judge_config:q} --name {wildcards.judge} --cache results/judge_cache"
        " --data-dir {params.data_dir} --out {output.result} > {log} 2>&1"


# A judge behind an API (kind openai) runs where Snakemake runs, online: compute nodes have no network.
use rule judge as judge_api with:
    params:
        offline_env="",
    wildcard_constraints:
        judge=judge_names(needs_network=True),
    localrule: True
    resources:
        gpu=0,
        **instruct_resources("judge_api"),


# NEFTune Tables 5 and 10: a variant of the plain generation (a length prompt, min_new_tokens, sampled
# decoding seeded by the run's seed: instruct.generation.variants) on the AlpacaEval prompts, in the run's
# variants/<name>-<key>/, laid out as the run's own generations/ and judge/. The plain generation is untouched.
rule generate_variant:
    input:
        sft=rules.sft.output.metrics,
    output:
        summary=f"{INSTRUCT_RUN}/variants/{{variant}}-{{vkey}}/generations/alpaca_eval.summary.json",
    log:
        "logs/generate_variant/{model}/{dataset}/{recipe}/{method}/seed{seed}-{key}/{variant}-{vkey}.log",
    benchmark:
        f"{BENCHMARKS}/generate_variant/{{model}}/{{dataset}}/{{recipe}}/{{method}}/seed{{seed}}-{{key}}/{{variant}}-{{vkey}}.tsv"
    params:
        settings=GENERATION_SETTINGS,
        variant_args=variant_generation_arguments,
        data_dir=config["data_dir"],
        cache_dir=config["cache_dir"],
        offline_env=OFFLINE_ENV,
    wildcard_constraints:
        **VARIANT_WILDCARDS,
    threads: config["threads"]
    resources:
        gpu=min(INSTRUCT_BLOCK["gpus_per_run"], 1),
        **instruct_resources("generate"),
    conda:
        ENV
    shell:
        "{params.offline_env}python -m robustft generate --sft-dir $(dirname {input.sft})"
        " {params.variant_args} --dataset {wildcards.dataset} --data-dir {params.data_dir}"
        " --cache-dir {params.cache_dir} --out $(dirname {output.summary})/alpaca_eval.jsonl"
        " --max-new-tokens {params.settings[max_new_tokens]} --batch-size {params.settings[batch_size]}"
        " --repetition-penalty {params.settings[repetition_penalty]} --seed {wildcards.seed}"
        " --prompt-overflow {params.settings[prompt_overflow]} --dtype {params.settings[precision]}"
        " --threads {threads} > {log} 2>&1"


# A variant's generations are judged by every judge, as the plain ones (its own rule per judge kind).
use rule judge as judge_variant with:
    input:
        generations=rules.generate_variant.output.summary,
    output:
        result=f"{INSTRUCT_RUN}/variants/{{variant}}-{{vkey}}/judge/{{judge}}.json",
    log:
        "logs/judge_variant/{model}/{dataset}/{recipe}/{method}/seed{seed}-{key}/{variant}-{vkey}/{judge}.log",
    benchmark:
        f"{BENCHMARKS}/judge_variant/{{model}}/{{dataset}}/{{recipe}}/{{method}}/seed{{seed}}-{{key}}/{{variant}}-{{vkey}}/{{judge}}.tsv"
    wildcard_constraints:
        judge=judge_names(needs_network=False),
        **VARIANT_WILDCARDS,


use rule judge_variant as judge_api_variant with:
    params:
        offline_env="",
    wildcard_constraints:
        judge=judge_names(needs_network=True),
        **VARIANT_WILDCARDS,
    localrule: True
    resources:
        gpu=0,
        **instruct_resources("judge_api"),


rule lm_eval:
    input:
        sft=rules.sft.output.metrics,
    output:
        result=f"{INSTRUCT_RUN}/leaderboard/{{lbtask}}.json",
    log:
        "logs/lm_eval/{model}/{dataset}/{recipe}/{method}/seed{seed}-{key}/{lbtask}.log",
    benchmark:
        f"{BENCHMARKS}/lm_eval/{{model}}/{{dataset}}/{{recipe}}/{{method}}/seed{{seed}}-{{key}}/{{lbtask}}.tsv"
    params:
        settings=INSTRUCT_BLOCK["leaderboard"],
        limit=lambda wildcards: (
            f"--limit {INSTRUCT_BLOCK['leaderboard']['limit']}" if INSTRUCT_BLOCK["leaderboard"]["limit"] else ""
        ),
        data_dir=config["data_dir"],
        offline_env=OFFLINE_ENV,
    threads: config["threads"]
    resources:
        gpu=min(INSTRUCT_BLOCK["gpus_per_run"], 1),
        **instruct_resources("lm_eval"),
    conda:
        ENV
    shell:
        "{params.offline_env}python -m robustft lm-eval --sft-dir $(dirname {input.sft})"
        " --tasks {wildcards.lbtask} --data-dir {params.data_dir} --out $(dirname {output.result})"
        " {params.limit} --batch-size {params.settings[batch_size]} --task-cache resources/lm_eval_tasks"
        " --threads {threads} > {log} 2>&1"


rule text_stats:
    input:
        generations=f"{INSTRUCT_RUN}/generations/alpaca_eval.summary.json",
    output:
        stats=f"{INSTRUCT_RUN}/text_stats.json",
    log:
        "logs/text_stats/{model}/{dataset}/{recipe}/{method}/seed{seed}-{key}.log",
    conda:
        ENV
    shell:
        "python -m robustft text-stats --generations $(dirname {input.generations})/alpaca_eval.jsonl"
        " --dataset {wildcards.dataset} --out {output.stats} > {log} 2>&1"


rule overlap:
    input:
        generations=f"{INSTRUCT_RUN}/generations/train_prompts.summary.json",
    output:
        overlap=f"{INSTRUCT_RUN}/overlap.json",
    log:
        "logs/overlap/{model}/{dataset}/{recipe}/{method}/seed{seed}-{key}.log",
    conda:
        ENV
    shell:
        "python -m robustft text-stats --overlap"
        " --generations $(dirname {input.generations})/train_prompts.jsonl --out {output.overlap} > {log} 2>&1"


rule collect_instruct:
    input:
        [output for run in INSTRUCT_GRID for output in instruct_run_outputs(run)],
    output:
        table=table_report(f"{TABLES}/instruct.csv", "instruct.rst", "Instruction-tuning track"),
        grid=GRID_MANIFEST["instruct"],
    log:
        f"logs/collect_instruct/{NAME}.log",
    params:
        run_dirs=[instruct_run_dir(*run) for run in INSTRUCT_GRID],
        variants=" ".join(f"--variant {folder}" for folder in USED_VARIANT_FOLDERS),
    conda:
        ENV
    shell:
        "python -m robustft collect-instruct --out {output.table} {params.variants} {params.run_dirs} > {log} 2>&1"


rule instruct_report:
    input:
        table=rules.collect_instruct.output.table,
        grid=rules.collect_instruct.output.grid,
        # The track's artifacts in the config's order: those of instruct.csv and of the embedding tables.
        artifacts=[
            f"{ARTIFACTS}/{key}/result.json" for key in config["artifacts"] if ARTIFACT_TABLES[key] in INSTRUCT_TABLES
        ],
    output:
        pdf=report(instruct_report_pdf(), caption="../report/instruct-report-pdf.rst", category="Reports"),
    log:
        f"logs/report/{INSTRUCT_BLOCK['report']['name']}.log",
    params:
        spec=instruct_report_spec,
        config_hash=workflow_config_hash,
        workflow_config=workflow_config_json,
        artifacts=lambda wildcards, input: [str(Path(path).parent) for path in input.artifacts],
        figures=f"figures/{INSTRUCT_BLOCK['report']['name']}",
    conda:
        ENV
    shell:
        "python -m robustft instruct-report --table {input.table} --spec {params.spec:q}"
        " --config-hash {params.config_hash} --workflow-config {params.workflow_config:q}"
        " --figures {params.figures} --out {output.pdf} --artifacts {params.artifacts} > {log} 2>&1"


# NEFTune Figures 6-8: measured on the analysed models' input-embedding matrices, no training
# (robustft.evals.embedding_analysis). Figures 6 and 8 need the base models only; Figure 7 also reads the
# config's plain and NEFTune SFT runs of them, so its table waits for those runs.
rule embedding_flips:
    output:
        table=table_report(f"{TABLES}/embedding_flips.csv", "embedding-flips.rst", "Instruction-tuning track"),
    log:
        f"logs/embedding_flips/{NAME}.log",
    benchmark:
        f"{BENCHMARKS}/embedding_flips/{NAME}.tsv"
    params:
        settings=json.dumps(EMBEDDINGS),
        data_dir=config["data_dir"],
        cache_dir=config["cache_dir"],
        offline_env=OFFLINE_ENV,
    threads: config["threads"]
    resources:
        gpu=min(INSTRUCT_BLOCK["gpus_per_run"], 1),
        **embedding_resources(),
    conda:
        ENV
    shell:
        "{params.offline_env}python -m robustft embedding-flips --settings {params.settings:q}"
        " --data-dir {params.data_dir} --cache-dir {params.cache_dir} --threads {threads}"
        " --out {output.table} > {log} 2>&1"


rule embedding_spectra:
    input:
        [f"{run['run_dir']}/sft/metrics.json" for run in SPECTRUM_RUNS],
    output:
        table=table_report(f"{TABLES}/embedding_spectra.csv", "embedding-spectra.rst", "Instruction-tuning track"),
    log:
        f"logs/embedding_spectra/{NAME}.log",
    benchmark:
        f"{BENCHMARKS}/embedding_spectra/{NAME}.tsv"
    params:
        settings=json.dumps(EMBEDDINGS),
        runs=json.dumps(SPECTRUM_RUNS),
        cache_dir=config["cache_dir"],
        offline_env=OFFLINE_ENV,
    threads: config["threads"]
    resources:
        gpu=min(INSTRUCT_BLOCK["gpus_per_run"], 1),
        **embedding_resources(),
    conda:
        ENV
    shell:
        "{params.offline_env}python -m robustft embedding-spectra --settings {params.settings:q}"
        " --runs {params.runs:q} --cache-dir {params.cache_dir} --threads {threads}"
        " --out {output.table} > {log} 2>&1"
