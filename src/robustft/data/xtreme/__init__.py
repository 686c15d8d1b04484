"""XTREME (Hu et al., 2020): the nine tasks' data, from a local XTREME download or else the Hub.

Local files live under `<data_dir>/xtreme/<task>/` in the layout that google-research/xtreme's
`scripts/download_data.sh` and `utils_preprocess.py` write (the `download/` folder there). For each split
the candidates below are tried in order and the first that exists is read; when none exists the Hub
dataset is read instead. [x] = confirmed against google-research/xtreme (download script, preprocess
script, processors) or the XTREME translations bucket (gs://xtreme_translations, as cited by TFDS);
[chosen] = our choice, where XTREME ships no file.

    task      split            path under <data_dir>/xtreme/<task>/
    xnli      train            train-en.tsv                                            [x]
              dev / test       dev-<l>.tsv / test-<l>.tsv                              [x]
              translate-train  translate-train/en-<l>-translated.tsv                   [x] bucket (1)
                               translate-train/train-<l>.tsv                           [chosen]
    pawsx     (the same four forms as xnli)                                            [x] bucket (1)
    udpos     train/dev/test   {train,dev,test}-<l>.tsv                                [x]
              translate-train  translate-train/train-<l>.tsv                           [chosen]
    panx      (the same as udpos)                                                      [x] / [chosen]
    squad     train / dev      train-v1.1.json / dev-v1.1.json                         [x]
              translate-train  translate-train/squad.translate.train.en-<l>.json       [x] bucket (1)
                               translate-train/train-<l>.json                          [chosen]
    xquad     test             xquad.<l>.json                                          [x]
    mlqa      dev / test       MLQA_V1/<split>/<split>-context-<l>-question-<l>.json   [x]
    tydiqa    train            tydiqa-goldp-v1.1-train/tydiqa.goldp.<l>.train.json     [x] (2)
                               tydiqa-goldp-v1.1-train/tydiqa.<l>.train.json           [x] (3)
              dev (= test)     tydiqa-goldp-v1.1-dev/tydiqa.goldp.<l>.dev.json         [x] (2)
                               tydiqa-goldp-v1.1-dev/tydiqa-goldp-dev-<language>.json  [x] (4)
              translate-train  translate-train/tydiqa.translate.train.en-<l>.json      [x] bucket (1)
                               translate-train/train-<l>.json                          [chosen]
    bucc2018  dev / test       <l>-en.<split>.<l>, <l>-en.<split>.en, <l>-en.<split>.gold   [x]
    tatoeba   test             tatoeba.<l3>-eng.<l3>, tatoeba.<l3>-eng.eng             [x] (5)
                               <l>-en.<l>, <l>-en.en                                   [x] (6)

(1) file name as in gs://xtreme_translations/{XNLI,PAWSX,SQuAD,TyDiQA-GoldP}/translate-train/.
(2) utils_preprocess.tydiqa_preprocess's names. (3) the name scripts/train_qa.sh reads. (4) the original
release's name, before XTREME renames it. (5) LASER's files with 3-letter codes (TATOEBA_CODES), the
input of XTREME's preprocessing. (6) XTREME's output: its English side is sorted, so it is an error.

File formats, as XTREME writes them:
- XNLI / PAWS-X: no header, tab-separated `sentence1, sentence2, label`, written with `csv.writer`, so a
  cell holding a quote is wrapped in quotes with the inner quote doubled (the real PAWS-X files have
  such cells); we undo that quoting. Also read: a header line (`premise hypo label` of the raw XNLI-MT
  `multinli.train.en.tsv`, `id sentence1 sentence2 label` of the raw PAWS-X `x-final/en/train.tsv`, which
  also carries an id column; header files are raw text, so no unquoting), 4 columns without a header
  (`id, s1, s2, label`), and 5 columns (the bucket's translate-train files: English pair, translated pair,
  label). XNLI-MT's `contradictory` reads as `contradiction`. Label ids follow the Hub: XNLI entailment=0,
  neutral=1, contradiction=2 (facebook/xnli); PAWS-X 0/1.
- UD-POS / PAN-X: `token<TAB>TAG` lines, a blank line between sentences. A raw PAN-X `<l>:` token prefix
  (`en:Obama`) is stripped when it names the file's language.
- SQuAD / XQuAD / MLQA / TyDiQA: SQuAD v1.1 JSON.
- BUCC: `<id><TAB><sentence>` per line in the two sentence files, `<source id><TAB><target id>` in gold.
- Tatoeba: one sentence per line; line i of both files is a gold pair.

Unlabelled files are an error, not an empty label column: XTREME withholds test labels (XNLI/PAWS-X/
UD-POS/PAN-X test files have no label column, the QA test files' answers are blanked, the BUCC test gold
is deleted, and Tatoeba's English side is sorted). The DataFormatError names the file and says to
evaluate on dev or to move the file away so the labelled split is read from the Hub.

Readers are strict: a malformed row stops with file:line (a JSON path for SQuAD-format files). Two
documented exceptions drop rows and count them in the split's `source`: training QA questions whose
answer_start does not point at the answer text (machine-translated SQuAD has such answers; dev/test stay
strict), and rows of the bucket's PAWS-X translate-train files with a wrong field count or a label other
than 0/1 (TFDS skips them too: "some rows in the files have been wrongly populated").

Settings: `zero-shot` trains on English only; `translate-train-all` on English plus the translate-train
data of every language found locally, or, when the task folder has none, every language the Hub has
(facebook/xnli and google-research-datasets/paws-x non-English train splits: the dataset authors'
machine translations, XNLI-MT and PAWS-X translated_train, not XTREME's own). UD-POS and PAN-X have no
XTREME translations: translate-train-all there is English plus whatever files the user puts at
`translate-train/train-<l>.tsv`. SQuAD and TyDiQA translations are on no Hub dataset: put the bucket's
files in place. `load_xtreme_train` returns the languages it used.

Modules: `spec` (XtremeTask, settings, label sets, language codes), `tasks` (the registry), `splits` (the
split types), `local_files` (finding local files and languages), one reader per local format
(`sentence_pairs`, `tagging`, `qa`, `retrieval`), `hub` (the Hub readers) and `loaders` (the public
loaders, which pick between local files and the Hub).
"""

from __future__ import annotations

from robustft.data.xtreme.loaders import load_xtreme_split, load_xtreme_train
from robustft.data.xtreme.local_files import local_languages
from robustft.data.xtreme.spec import PANX_TAGS, SETTINGS, UPOS_TAGS, XNLI_LABELS
from robustft.data.xtreme.splits import QASplit, RetrievalSplit, TaggingSplit
from robustft.data.xtreme.tasks import TRAINING_DATA, XTREME_TASKS, get_xtreme_task

__all__ = [
    "PANX_TAGS",
    "SETTINGS",
    "TRAINING_DATA",
    "UPOS_TAGS",
    "XNLI_LABELS",
    "XTREME_TASKS",
    "QASplit",
    "RetrievalSplit",
    "TaggingSplit",
    "get_xtreme_task",
    "load_xtreme_split",
    "load_xtreme_train",
    "local_languages",
]
