"""What an XTREME task is: its spec (XtremeTask), the settings and label sets, and the language names and
codes that fill the `{lang}`, `{lang3}`, `{name}` and `{Name}` fields of its file and Hub config templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

SETTINGS = ("zero-shot", "translate-train-all")
SPLITS = ("train", "dev", "test", "translate-train")

XNLI_LABELS = ("entailment", "neutral", "contradiction")  # facebook/xnli ClassLabel order
PAWSX_LABELS = ("0", "1")  # google-research-datasets/paws-x ClassLabel names
LABEL_ALIASES = {"contradictory": "contradiction"}  # XNLI-MT's spelling
# google/xtreme's ClassLabel orders (udpos.* pos_tags, PAN-X.* ner_tags).
UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip
PANX_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

# Language names as google/xtreme's `udpos.<Name>` configs and TyDiQA's file names / question ids spell them.
LANGUAGE_NAMES = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "bn": "Bengali", "de": "German",
    "el": "Greek", "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque",
    "fa": "Persian", "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi",
    "hu": "Hungarian", "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh",
    "ko": "Korean", "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian",
    "sw": "Swahili", "ta": "Tamil", "te": "Telugu", "th": "Thai", "tl": "Tagalog",
    "tr": "Turkish", "ur": "Urdu", "vi": "Vietnamese", "wo": "Wolof", "yo": "Yoruba",
    "zh": "Chinese",
}  # fmt: skip
# XTREME's map between its 2-letter codes and Tatoeba's 3-letter ones (utils_preprocess.tatoeba_preprocess).
TATOEBA_CODES = {
    "af": "afr", "ar": "ara", "bg": "bul", "bn": "ben", "de": "deu", "el": "ell", "es": "spa",
    "et": "est", "eu": "eus", "fa": "pes", "fi": "fin", "fr": "fra", "he": "heb", "hi": "hin",
    "hu": "hun", "id": "ind", "it": "ita", "ja": "jpn", "jv": "jav", "ka": "kat", "kk": "kaz",
    "ko": "kor", "ml": "mal", "mr": "mar", "nl": "nld", "pt": "por", "ru": "rus", "sw": "swh",
    "ta": "tam", "te": "tel", "th": "tha", "tl": "tgl", "tr": "tur", "ur": "urd", "vi": "vie",
    "zh": "cmn", "en": "eng",
}  # fmt: skip

TRANSLATIONS_URL = "https://console.cloud.google.com/storage/browser/xtreme_translations"


@dataclass(frozen=True)
class XtremeTask:
    """One XTREME task, or a training corpus of one (SQuAD).

    `local_files` maps a split to its candidate paths under `<data_dir>/xtreme/<key>/` (first existing
    wins); `{lang}`, `{lang3}` (Tatoeba code) and `{name}` (lower-case language name) are filled in.
    `hub_config` is filled the same way (`{Name}`: capitalised name); `hub_splits` maps our split to the
    Hub's, and a split missing there has no Hub source. `hub_columns` names the Hub columns where they
    differ between datasets (classification: sentence 1, sentence 2, label; tagging: tokens, tags).
    `train_data` is the key whose English train split zero-shot trains on, `translate_train_data` the key
    whose English train + translate-train files translate-train-all trains on (None: not trained).
    """

    key: str
    paper_name: str
    kind: str  # "classification" | "tagging" | "qa" | "retrieval"
    languages: tuple[str, ...]
    metrics: tuple[str, ...]
    primary_metric: str
    labels: tuple[str, ...] | None
    local_files: dict[str, tuple[str, ...]]
    hub_id: str
    hub_config: str
    hub_splits: dict[str, str]
    hub_columns: tuple[str, ...] = ()
    train_data: str | None = None
    translate_train_data: str | None = None
    xtreme_translations: bool = False  # XTREME released machine-translated training data for it
    english_only_train: bool = False  # "train" is English; other languages are "translate-train"
    source_notes: dict[str, str] = field(default_factory=dict)  # split -> note appended to `source`

    @property
    def hub_translate_train(self) -> tuple[str, ...]:
        """Languages whose translate-train data the Hub dataset has."""
        if "translate-train" not in self.hub_splits:
            return ()
        return tuple(language for language in self.languages if language != "en")

    def local_dir(self, data_dir: str | Path) -> Path:
        return Path(data_dir) / "xtreme" / self.key

    def local_paths(self, data_dir: str | Path, split: str, language: str) -> list[Path]:
        return [self.local_dir(data_dir) / fill_template(t, language) for t in self.templates(split)]

    def hub_source(self, split: str, language: str) -> str | None:
        """'<id> (config .., split ..)' for messages, or None when the Hub has no such data."""
        if split not in self.hub_splits:
            return None
        config = fill_template(self.hub_config, language)
        return f"{self.hub_id} (config {config!r}, split {self.hub_splits[split]!r})"

    def templates(self, split: str) -> tuple[str, ...]:
        try:
            return self.local_files[split]
        except KeyError:
            raise KeyError(
                f"{self.paper_name} has no split {split!r}; it has {', '.join(self.local_files)}"
            ) from None


def _lookup(table: dict[str, str], language: str, what: str) -> str:
    try:
        return table[language]
    except KeyError:
        raise KeyError(
            f"no {what} known for language {language!r}; add it to robustft/data/xtreme/spec.py"
        ) from None


def fill_template(template: str, language: str) -> str:
    """A path or config template with its language fields filled in."""
    fields = {"lang": language}
    if "{lang3}" in template:
        fields["lang3"] = _lookup(TATOEBA_CODES, language, "Tatoeba 3-letter code")
    if "{name}" in template or "{Name}" in template:
        fields["Name"] = _lookup(LANGUAGE_NAMES, language, "language name")
        fields["name"] = fields["Name"].lower()
    return template.format(**fields)
