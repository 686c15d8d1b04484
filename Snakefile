# robustft: seeds x models x methods x tasks -> runs -> tables -> PDF report.
# Thin rules; the logic lives in the `robustft` package (src/robustft), which every rule calls.
from snakemake.utils import min_version

min_version("9.19")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        report_pdf(),
    default_target: True
