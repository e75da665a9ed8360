"""Loading a Hugging Face tokenizer folder that may be missing, truncated or corrupt.

Used by Wan's UMT5 tokenizer (:func:`mlx_video.wan.t5.load_tokenizer`) and LTX-2's Gemma tokenizer
(:class:`mlx_video.ltx2.text_encoder.GemmaTokenizer`), and by both converters, which load the copied
tokenizer before a converted folder is renamed into place, so a corrupt tokenizer never lands in a
converted folder or the conversion cache. Nothing here caches a tokenizer.
"""

from __future__ import annotations

from pathlib import Path


class TokenizerError(OSError, ValueError):
    """A tokenizer folder cannot be loaded (corrupt, truncated, wrong kind); the message names the path.
    An OSError (the file is unusable) and a ValueError (the CLI's one-line errors)."""


class TokenizerNotFound(TokenizerError, FileNotFoundError):
    """The tokenizer folder, or every file it must hold, is missing."""


def load_tokenizer(
    folder: str | Path,
    files: tuple[str, ...] = ("tokenizer.json", "tokenizer.model", "spiece.model"),
    what: str = "tokenizer",
):
    """``transformers.AutoTokenizer`` from the local ``folder`` (never downloads, no fallback).

    ``files``: at least one must exist. Every ``*.json`` in the folder must parse, so a truncated
    tokenizer.json is reported with its path, not as a bare parse error from the Rust tokenizers library.
    Raises TokenizerNotFound (folder or files missing) and TokenizerError (anything that fails to load).
    """
    import json

    path = Path(folder)
    if not path.is_dir():
        raise TokenizerNotFound(f"{what} folder not found: {path}")
    if not any((path / f).is_file() for f in files):
        raise TokenizerNotFound(f"{what} folder {path} has none of {', '.join(files)}")
    for f in sorted(path.glob("*.json")):
        try:
            json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as e:
            raise TokenizerError(f"{f}: corrupt {what} file ({str(e)[:160]})") from e
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as e:  # transformers / tokenizers raise many kinds for broken files
        msg = " ".join(str(e).split())[:200]
        raise TokenizerError(f"cannot load the {what} in {path}: {type(e).__name__}: {msg}") from e
