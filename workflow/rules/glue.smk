# One fine-tuning run per (model, task, method, seed). metrics.json is written last and atomically by
# the CLI, so a killed job leaves no output and is redone on the next invocation.
# `robustft launch` starts the run on the job's GPUs: directly for 0-1, under accelerate/FSDP for more.
# `exec` replaces the job's shell by the run, so a SIGTERM from SLURM (time limit, preemption) reaches the
# run itself (the job's own Snakemake gets it too and waits for the run): the run saves a checkpoint and
# exits, instead of the shell dying at once under a run still writing its checkpoint.
# Memory and run time (scaled by the attempt) come from the workflow profile, profiles/default/.


rule train:
    output:
        metrics=f"{RUNS}/{{model}}/{{task}}/{{method}}/seed{{seed}}-{{key}}/metrics.json",
    log:
        "logs/train/{model}/{task}/{method}/seed{seed}-{key}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{model}}/{{task}}/{{method}}/seed{{seed}}-{{key}}.tsv"
    params:
        method_args=method_arguments,
        data_dir=config["data_dir"],
        cache_dir=config["cache_dir"],
        offline_env=OFFLINE_ENV,
    group:
        pack_group("train")  # several runs per cluster job: config `pack` (common.smk)
    priority:
        train_priority
    threads: config["threads"]
    resources:
        # From the config, not the profile: how many GPUs a run needs depends on its model.
        **run_gpu_resources(config["gpus_per_run"], "train"),
    conda:
        ENV
    shell:
        "{params.offline_env}exec python -m robustft launch --gpus {resources.gpu} --"
        " train --model {wildcards.model} --task {wildcards.task}"
        " --method {wildcards.method} --seed {wildcards.seed} --out $(dirname {output.metrics})"
        " --data-dir {params.data_dir} --cache-dir {params.cache_dir} --threads {threads}"
        " {params.method_args} > {log} 2>&1"
