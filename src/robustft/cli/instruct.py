"""The instruction-tuning (NEFTune) track's subcommands: SFT, generation, judging, text statistics,
the Open LLM Leaderboard, and the track's table and report.

The commands of the stage modules stay beside their code; each wrapper here imports its module when the
command runs, so building the parser never waits for torch or transformers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from robustft.cli.arguments import (
    HF_CACHE_HELP,
    MODEL_HELP,
    THREADS_HELP,
    WORKFLOW_CONFIG_HELP,
    json_value,
    model_name,
    non_negative_int,
    positive_int,
)
from robustft.cli.glue import check_tables_of_config


def cmd_collect_instruct(args: argparse.Namespace) -> int:
    from robustft.io import write_text_atomic
    from robustft.tables.instruct import collect_instruct

    frame = collect_instruct([Path(p) for p in args.run_dirs], variants=args.variants)
    write_text_atomic(args.out, frame.to_csv(index=False))
    from robustft.provenance import write_grid_manifest

    write_grid_manifest(Path(args.out).parent, "instruct", list(args.run_dirs))
    runs = frame[["model", "dataset", "recipe", "method", "seed"]].drop_duplicates()
    print(f"{len(runs)} runs -> {args.out}")
    return 0


def cmd_instruct_report(args: argparse.Namespace) -> int:
    from robustft.provenance import summarize_runs
    from robustft.report.instruct import InstructReportSpec, build_instruct_report

    check_tables_of_config(Path(args.table).parent, args.workflow_config, ("instruct",))

    spec = InstructReportSpec.from_dict(
        {
            **args.spec,
            "provenance": summarize_runs(
                Path(args.table).parent,
                args.config_hash,
                table=Path(args.table).name,
                run_json="sft/run.json",
            ),
        }
    )
    build_instruct_report(
        Path(args.table),
        Path(args.out),
        spec,
        figures_dir=Path(args.figures),
        artifact_dirs=[Path(directory) for directory in args.artifacts],
    )
    print(f"report -> {args.out}")
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from robustft.train.sft import cmd_sft as run_sft  # imports torch

    return run_sft(args)


def cmd_lm_eval(args: argparse.Namespace) -> int:
    from robustft.evals.leaderboard import cmd_lm_eval as run_lm_eval

    return run_lm_eval(args)


def cmd_generate(args: argparse.Namespace) -> int:
    from robustft.evals.generation import cmd_generate as run_generate

    return run_generate(args)


def cmd_judge(args: argparse.Namespace) -> int:
    from robustft.evals.judges import cmd_judge as run_judge

    return run_judge(args)


def cmd_text_stats(args: argparse.Namespace) -> int:
    from robustft.evals.text_stats import cmd_text_stats as run_text_stats

    return run_text_stats(args)


def cmd_embedding_flips(args: argparse.Namespace) -> int:
    from robustft.evals.embedding_analysis import cmd_embedding_flips as run_flips  # imports torch

    return run_flips(args)


def cmd_embedding_spectra(args: argparse.Namespace) -> int:
    from robustft.evals.embedding_analysis import cmd_embedding_spectra as run_spectra  # imports torch

    return run_spectra(args)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    collect = commands.add_parser("collect-instruct", help="instruction-tuning runs -> instruct.csv")
    collect.add_argument("--out", required=True, type=Path)
    collect.add_argument(
        "--variant",
        dest="variants",
        action="append",
        default=[],
        help="a generation variant's folder (<name>-<key>) to read in each run's variants/ where present; "
        "repeatable",
    )
    collect.add_argument("run_dirs", nargs="+", help="run directories results/instruct/<model>/.../seed<S>")
    collect.set_defaults(func=cmd_collect_instruct)

    instruct_report = commands.add_parser("instruct-report", help="the instruction-tuning track's PDF")
    instruct_report.add_argument("--table", required=True, help="instruct.csv")
    instruct_report.add_argument(
        "--spec", type=json_value, required=True, help="JSON (config's instruct.report)"
    )
    instruct_report.add_argument("--config-hash", default="unknown")
    instruct_report.add_argument("--workflow-config", type=json_value, help=WORKFLOW_CONFIG_HELP)
    instruct_report.add_argument("--figures", required=True)
    instruct_report.add_argument("--out", required=True)
    instruct_report.add_argument("--artifacts", nargs="*", default=[])
    instruct_report.set_defaults(func=cmd_instruct_report)

    add_lm_eval_parser(commands)
    add_generate_parser(commands)
    add_judge_parser(commands)
    add_text_stats_parser(commands)
    add_sft_parser(commands)
    add_embedding_parsers(commands)


def add_lm_eval_parser(commands: argparse._SubParsersAction) -> None:
    # The help names the module's task registry and defaults; the module imports lm-eval and torch only
    # inside its command.
    from robustft.evals.leaderboard import DEFAULT_BATCH_SIZE, DEFAULT_SEED, LEADERBOARD_TASKS

    parser = commands.add_parser(
        "lm-eval",
        help="Open LLM Leaderboard v1 tasks (ARC, HellaSwag, MMLU, TruthfulQA) with lm-evaluation-harness",
        description="Writes OUT/<task>.json per task (value in percent). Local files under --data-dir are "
        "used with lm-eval's own prompts; otherwise the Hub; otherwise the task is marked 'not run'.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sft-dir", type=Path, help="a run's sft/ directory (its model/ is evaluated)")
    source.add_argument("--model", type=model_name, help=f"a base model: {MODEL_HELP}")
    parser.add_argument(
        "--tasks", nargs="+", default=list(LEADERBOARD_TASKS), help=f"default: {' '.join(LEADERBOARD_TASKS)}"
    )
    parser.add_argument("--data-dir", default="resources/data")
    parser.add_argument(
        "--out", required=True, type=Path, help="directory for <task>.json (a run's leaderboard/)"
    )
    parser.add_argument(
        "--limit", type=positive_int, help="documents per task (smoke runs only: not comparable)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help="eval seed; same for every run compared"
    )
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    parser.add_argument(
        "--task-cache", type=Path, help="converted data + local task YAMLs (default ~/.cache)"
    )
    parser.add_argument("--bootstrap-iters", type=non_negative_int, default=100)
    parser.add_argument(
        "--log-samples", action="store_true", help="also write lm-eval's per-document records"
    )
    parser.set_defaults(func=cmd_lm_eval)


def add_generate_parser(commands: argparse._SubParsersAction) -> None:
    from robustft.evals.generation import OVERFLOW_POLICIES, TEMPLATES  # stdlib-only at import

    parser = commands.add_parser(
        "generate",
        help="greedy (or variant) generations of a fine-tuned (or base) causal LM on AlpacaEval or training "
        "prompts",
        description="Appends one JSON line per prompt to --out after each batch; rerunning continues where "
        "it stopped. Writes <out>.summary.json.",
    )
    source = parser.add_argument_group("model (exactly one)")
    source.add_argument("--sft-dir", help="<run>/sft directory written by SFT (loads sft/model)")
    source.add_argument("--model", type=model_name, help=f"an untuned base model: {MODEL_HELP}")
    parser.add_argument(
        "--prompts",
        choices=("alpaca_eval", "train"),
        default="alpaca_eval",
        help="train: a sample of the examples the --sft-dir run trained on, their responses as reference",
    )
    parser.add_argument(
        "--dataset",
        help="training dataset key, e.g. alpaca: the prompts of --prompts train, and the template",
    )
    parser.add_argument("--out", required=True, type=Path, help="generations jsonl")
    parser.add_argument(
        "--template",
        choices=TEMPLATES,
        help="prompt template (default: --dataset's SFT template; 'chat', the tokenizer's, for --model)",
    )
    parser.add_argument("--generator", help="name in the records (default: from --model or --sft-dir)")
    parser.add_argument("--max-new-tokens", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repetition-penalty", type=float, default=1.2)
    parser.add_argument(
        "--max-prompts", type=int, help="first N AlpacaEval prompts, or a sample of N train prompts"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of --prompts train's sample and of --do-sample's draws"
    )
    variant = parser.add_argument_group("variants (NEFTune Tables 5 and 10; default: the plain generation)")
    variant.add_argument("--system-prompt", help="text added to the template's system part")
    variant.add_argument("--min-new-tokens", type=positive_int, help="block EOS until this many new tokens")
    variant.add_argument("--do-sample", action="store_true", help="sample (seeded by --seed), not greedy")
    variant.add_argument("--top-p", type=float, help="nucleus sampling (with --do-sample)")
    variant.add_argument("--temperature", type=float, help="sampling temperature (with --do-sample)")
    parser.add_argument("--prompt-overflow", choices=OVERFLOW_POLICIES, default="truncate")
    parser.add_argument("--context-length", type=int, help="default: the model's max_position_embeddings")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--device", help="e.g. cuda (default: where the loader put the model)")
    parser.add_argument("--data-dir", default="resources/data")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--threads", type=int, help=THREADS_HELP)
    parser.set_defaults(func=cmd_generate)


def add_judge_parser(commands: argparse._SubParsersAction) -> None:
    from robustft.evals.judges import JUDGES  # stdlib-only at import

    parser = commands.add_parser(
        "judge",
        help="AlpacaEval-protocol win rate of generations against the text-davinci-003 references",
        description="Judges every generation against its AlpacaEval reference with a pairwise judge, caching "
        "each judgement, and writes the win rate with a bootstrap CI.",
    )
    parser.add_argument("--generations", required=True, help="generations jsonl (robustft generate)")
    parser.add_argument(
        "--judge-config",
        required=True,
        type=json_value,
        help='JSON, e.g. {"kind": "openai", "model": "gpt-4-0613", "api_key_env": "OPENAI_API_KEY"}; '
        f"kinds: {sorted(JUDGES)}",
    )
    parser.add_argument(
        "--name", required=True, help="judge name: names the cache file and judge/<name>.json"
    )
    parser.add_argument("--cache", default="results/judge_cache", help="directory of <name>.jsonl caches")
    parser.add_argument("--out", required=True, type=Path, help="judge/<name>.json")
    parser.add_argument("--data-dir", default="resources/data")
    parser.add_argument("--seed", type=int, default=0, help="order coin and bootstrap seed")
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.set_defaults(func=cmd_judge)


def add_text_stats_parser(commands: argparse._SubParsersAction) -> None:
    from robustft.evals.text_stats import CHUNK_CUTOFFS  # stdlib-only at import

    parser = commands.add_parser(
        "text-stats",
        help="NEFTune Table 4 statistics of generations, or Figure 5 overlap with --overlap",
        description="Writes text_stats.json (length, 2-gram repetition, log-diversity on prefix chunks) or, "
        "with --overlap, overlap.json (ROUGE-L and BLEU of each output against its 'reference').",
    )
    parser.add_argument("--generations", required=True, help="generations jsonl (robustft generate)")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--dataset", help=f"training dataset, picks the chunk cutoff: {CHUNK_CUTOFFS}")
    parser.add_argument("--cutoff", type=int, help="chunk length in whitespace tokens (overrides --dataset)")
    parser.add_argument("--overlap", action="store_true", help="Figure 5: ROUGE-L/BLEU against 'reference'")
    parser.add_argument("--no-stemmer", action="store_true", help="ROUGE-L without the Porter stemmer")
    parser.set_defaults(func=cmd_text_stats)


def add_sft_parser(commands: argparse._SubParsersAction) -> None:
    sft = commands.add_parser("sft", help="instruction-tune one causal LM on one dataset (NEFTune track)")
    sft.add_argument("--model", required=True, type=model_name, help=MODEL_HELP)
    sft.add_argument("--dataset", required=True, help="instruction dataset, e.g. alpaca, alpaca_seed")
    sft.add_argument("--method", required=True, help="method name: finetune, neftune, ...")
    sft.add_argument(
        "--method-components", type=json_value, help='JSON, e.g. {"neftune": {"alpha": 5, "mode": "paper"}}'
    )
    sft.add_argument("--recipe", default="default", help="name of this set of SFT settings")
    sft.add_argument("--sft-config", type=json_value, help="JSON object of SFT settings (SFTSettings)")
    sft.add_argument("--seed", required=True, type=int)
    sft.add_argument("--out", required=True, type=Path, help="the run's sft/ directory")
    sft.add_argument("--data-dir", default="resources/data")
    sft.add_argument("--cache-dir", default=None, help=HF_CACHE_HELP)
    sft.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    sft.set_defaults(func=cmd_sft)


def add_embedding_parsers(commands: argparse._SubParsersAction) -> None:
    settings_help = (
        "JSON: the config's instruct.embeddings with models and dataset filled in "
        "(robustft.evals.embedding_analysis.EmbeddingSettings)"
    )
    flips = commands.add_parser(
        "embedding-flips",
        help="NEFTune Figures 6 and 8: tokens whose noisy embedding snaps to another vocabulary row",
        description="Writes embedding_flips.csv: per training sample and alpha (Figure 6), and per alpha and "
        "sequence length over the vocabulary (Figure 8), how many tokens NEFTune's noise moves to another "
        "nearest neighbour (Euclidean) of the input-embedding matrix.",
    )
    flips.add_argument("--settings", required=True, type=json_value, help=settings_help)
    flips.add_argument("--data-dir", default="resources/data")
    flips.add_argument("--cache-dir", default=None, help=HF_CACHE_HELP)
    flips.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when there is one)")
    flips.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    flips.add_argument("--out", required=True, type=Path, help="embedding_flips.csv")
    flips.set_defaults(func=cmd_embedding_flips)

    spectra = commands.add_parser(
        "embedding-spectra",
        help="NEFTune Figure 7: top singular values of E·Eᵀ of base models and their SFT runs",
        description="Writes embedding_spectra.csv: the top-k singular values of the embedding similarity "
        "E·Eᵀ (from the SVD of E) of each base model and of the given SFT runs, and a 'not run' row with "
        "the reason for a missing plain or NEFTune run.",
    )
    spectra.add_argument("--settings", required=True, type=json_value, help=settings_help)
    spectra.add_argument(
        "--runs",
        type=json_value,
        default=[],
        help='JSON list of runs: {"model", "dataset", "recipe", "method", "seed", "arm" (baseline or '
        'neftune), "run_dir"}',
    )
    spectra.add_argument("--cache-dir", default=None, help=HF_CACHE_HELP)
    spectra.add_argument("--threads", type=positive_int, help=THREADS_HELP)
    spectra.add_argument("--out", required=True, type=Path, help="embedding_spectra.csv")
    spectra.set_defaults(func=cmd_embedding_spectra)
