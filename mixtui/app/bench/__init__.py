"""`mixtui bench` and the compare screen: the same prompt on several models, side by side.

One engine process per model, one at a time, so that each model's memory is given back
before the next one loads. Real models load from disk; synthetic ones are built in the
engine from their registry geometry with random weights in the real checkpoint's layout,
and may run only their first N layers: the runner then also runs the first N/2 and scales
the times and the memory to the full depth.

- `figures.py`: the request, the rows and everything computed from the runs (no MLX);
- `runner.py`: `BenchRunner`, which starts the engines and measures;
- `report.py`: the report as a table, Markdown, CSV or JSON;
- `machine.py`: the machine, its bandwidth probe, the speeds measured on it.

This module holds only the defaults, so that the command line can show them cheaply.
"""

DEFAULT_PROMPT_TOKENS = 128
DEFAULT_GEN_TOKENS = 64
DEFAULT_RUNS = 3
DEFAULT_PERPLEXITY_TOKENS = 4096

DEFAULT_PROMPT = (
    "It is a truth universally acknowledged, that a single man in possession of a good "
    "fortune, must be in want of a wife. However little known the feelings or views of such "
    "a man may be on his first entering a neighbourhood, this truth is so well fixed in the "
    "minds of the surrounding families, that he is considered as the rightful property of "
    "some one or other of their daughters. Explain, in a few short paragraphs, how a mixture "
    "of experts decides which of its experts reads each word, and what that costs in memory."
)
