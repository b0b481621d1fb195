"""Write the held-out Austen text that the bundled nano never saw (the last 5 % of each
novel, as scripts/train_nano.py splits it), to score with `mixtui bench --perplexity`:

    python scripts/heldout_text.py austen-heldout.txt
    mixtui bench --models nano --experts-per-token 1,2,4,8 --perplexity austen-heldout.txt

It reads the novels from the same Debian package as the training script (fetched into its
cache folder once, with `apt-get download`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_nano  # noqa: E402  (the training script's own corpus reader and split)

HOLDOUT = 0.05  # train_nano.py's default (--holdout), with which nano was trained


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the text file to write")
    parser.add_argument("--cache-dir", type=Path, default=train_nano.DEFAULT_CACHE,
                        help="where the Debian package is kept")
    args = parser.parse_args()
    corpus = train_nano.build_corpus(args.cache_dir, None, HOLDOUT, None, None)
    text = "\n\n".join("\n".join(paragraphs) for paragraphs in corpus.val.values())
    args.out.write_text(text + "\n", encoding="utf-8")
    print(f"{args.out}: {len(text):,} characters held out of "
          f"{', '.join(corpus.val)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
