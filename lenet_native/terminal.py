"""Digits drawn in text, for a terminal.

    >>> from lenet_native.terminal import ascii_digit
    >>> print(ascii_digit(digit))            # a uint8 (28, 28) MNIST-style digit

A character cell is about twice as tall as it is wide, so each line of text draws two
rows of pixels; brightness is drawn with :data:`RAMP`, darkest first.
"""
from __future__ import annotations

import shutil

import numpy as np

__all__ = ["RAMP", "digit_lines", "ascii_digit", "draw_digits"]

#: Characters from darkest to brightest.
RAMP = " .:-=+*#%@"
_SIZE = 28


def digit_lines(digit, ramp: str = RAMP) -> list:
    """A digit as lines of text.

    Parameters
    ----------
    digit : array_like
        uint8 (28, 28), 0 = background, 255 = ink.
    ramp : str
        Characters from darkest to brightest.

    Returns
    -------
    list of str
        14 lines of 28 characters (rows averaged in pairs).
    """
    d = np.asarray(digit, dtype=np.float64)
    if d.shape != (_SIZE, _SIZE):
        raise ValueError(f"digit_lines expects a (28, 28) digit; got {d.shape}")
    d = (d[0::2] + d[1::2]) / 2.0
    idx = np.minimum((d * len(ramp) / 256.0).astype(int), len(ramp) - 1)
    return ["".join(ramp[i] for i in row) for row in idx]


def ascii_digit(digit, ramp: str = RAMP) -> str:
    """A uint8 (28, 28) digit drawn in text: 14 lines of at most 28 characters
    (:func:`digit_lines` without trailing blanks)."""
    return "\n".join(line.rstrip() for line in digit_lines(digit, ramp))


def draw_digits(digits, captions, width=None, ramp: str = RAMP) -> str:
    """Digits side by side, each with its caption underneath.

    Parameters
    ----------
    digits : sequence of array_like
        uint8 (28, 28) digits.
    captions : sequence of str
        One per digit, cut to 28 characters.
    width : int, optional
        Columns available; default the terminal's, else 80. As many digits go on a row
        as fit.
    ramp : str
    """
    if width is None:
        width = shutil.get_terminal_size((80, 24)).columns
    gap = "   "
    per_row = max(1, (width + len(gap)) // (28 + len(gap)))
    blocks = []
    for start in range(0, len(digits), per_row):
        group = list(range(start, min(start + per_row, len(digits))))
        pics = [digit_lines(digits[i], ramp) for i in group]
        lines = [gap.join(p[r] for p in pics).rstrip() for r in range(14)]
        lines.append(gap.join(f"{captions[i]:<28.28}" for i in group).rstrip())
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
