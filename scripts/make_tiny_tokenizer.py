"""Build a tiny UMT5-style (SentencePiece Unigram) tokenizer folder from a fixed piece list.

The folder stands in for the checkpoint's ``google/umt5-xxl/`` tokenizer in tests: it loads with
``transformers.AutoTokenizer.from_pretrained`` as a ``T5Tokenizer`` with the UMT5 special ids
(pad=0, eos=1, unk=2), splits on whitespace with the '▁' word-start marker, and appends ``</s>``.
Nothing is trained: the pieces and their scores are fixed below, so two runs write byte-identical
files (see ``--check``).

    python -m scripts.make_tiny_tokenizer [--out tests/fixtures/tiny-umt5-tokenizer] [--check]
"""

from __future__ import annotations

import argparse
import json
import string
import sys
import tempfile
from pathlib import Path

SPECIALS = ["<pad>", "</s>", "<unk>"]  # ids 0, 1, 2 as in UMT5

WORDS = """
the a an of and in on with at to is are by for from over under into through his her their its it
this that there very as while up down out off near far behind front across around between above
cat dog man woman person people child girl boy baby family friends crowd city street road night
day sun sunset sunrise light lights camera slowly slow fast motion walking running flying sitting
standing dancing jumping swimming red blue green yellow white black golden orange purple pink gray
bright dark soft warm cold beautiful small large big old young new tall long water ocean sea beach
wave waves river lake mountain mountains forest tree trees flower flowers field grass sky cloud
clouds rain snow fire smoke car cars bridge building buildings house window room table cup coffee
astronaut rocket space moon star stars planet earth bird birds fish horse close shot wide view
aerial cinematic scene video frame background foreground detailed high quality realistic style
film photo portrait face eyes hair hand hands smile looking moving turns gentle glowing neon rainy
foggy morning evening wearing dress jacket hat playing guitar music reading book eating drinking
holding riding bicycle train boat ship plane blurry low overall worst static still picture ugly
deformed extra fingers subtitles bad lighting shadows reflections golden hour tracking pan zoom
""".split()
SUFFIXES = ["s", "es", "ed", "ing", "ly", "er", "est", "tion", "ness", "ful"]
PUNCT = list(".,!?'\"-:;()&/")


def pieces() -> list[tuple[str, float]]:
    """The fixed vocabulary: (piece, log-probability score), specials first.

    Scores rise with length (``-10 + 0.5·len``) so the Unigram Viterbi prefers whole words.
    """
    out: list[tuple[str, float]] = [(p, 0.0) for p in SPECIALS]
    seen = set(SPECIALS)

    def add(p: str) -> None:
        if p not in seen:
            seen.add(p)
            out.append((p, round(-10.0 + 0.5 * len(p.lstrip("▁")), 2)))

    add("▁")
    for c in string.ascii_lowercase + string.ascii_uppercase + string.digits:
        add(c)
        add("▁" + c)
    for c in PUNCT:
        add(c)
    for s in SUFFIXES:
        add(s)
    for w in WORDS:
        add("▁" + w)
        add("▁" + w.capitalize())
    return out


def build(out_dir: Path) -> None:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into ``out_dir``."""
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram(pieces(), unk_id=2, byte_fallback=False))
    # Same pre-tokenisation as transformers' T5Tokenizer builds for SentencePiece Unigram models.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single=["$A", "</s>"], pair=["$A", "</s>", "$B", "</s>"], special_tokens=[("</s>", 1)]
    )
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])

    specials = {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    config = {
        "tokenizer_class": "T5Tokenizer",
        "extra_ids": 0,
        "additional_special_tokens": [],
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,
        **specials,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(json.loads(tok.to_str()), indent=2, ensure_ascii=False) + "\n"
    (out_dir / "tokenizer.json").write_text(text, encoding="utf-8")
    for name, obj in (("tokenizer_config.json", config), ("special_tokens_map.json", specials)):
        (out_dir / name).write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests/fixtures/tiny-umt5-tokenizer"
    )
    ap.add_argument(
        "--check",
        action="store_true",
        help="build twice into temporary folders and fail unless the files are byte-identical",
    )
    args = ap.parse_args(argv)
    if args.check:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            build(Path(a))
            build(Path(b))
            names = sorted(p.name for p in Path(a).iterdir())
            diff = [n for n in names if (Path(a) / n).read_bytes() != (Path(b) / n).read_bytes()]
            if diff:
                print(f"not deterministic: {diff}", file=sys.stderr)
                return 1
            print(f"deterministic: {names}")
    build(args.out)
    print(f"wrote {args.out} ({len(pieces())} pieces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
