# Fill resources/ from the Hugging Face Hub on a machine that reaches it (a login node), so compute
# nodes can run offline. Run it explicitly: `snakemake prefetch` (never a dependency of training,
# because local data needs no download). It runs where Snakemake runs, never as a cluster job, and
# always online, whatever HF_*_OFFLINE the calling shell exports.


localrules:
    prefetch,


rule prefetch:
    output:
        "resources/prefetch.json",
    log:
        "logs/prefetch.log",
    params:
        models=" ".join(dict.fromkeys(config["models"] + [run[0] for run in XTREME_GRID])),
        tasks=" ".join(config["tasks"]) if "glue" in config["tracks"] else "",
        xtreme=" ".join(xtreme_prefetch_items()),
        data_dir=config["data_dir"],
        cache_dir=config["cache_dir"],
    conda:
        ENV
    shell:
        "HF_HUB_OFFLINE=0 HF_DATASETS_OFFLINE=0"
        " python -m robustft prefetch --models {params.models} --tasks {params.tasks} --xtreme {params.xtreme}"
        " --data-dir {params.data_dir} --cache-dir {params.cache_dir} --marker {output} > {log} 2>&1"
