"""The fixed prototypes of LeNet-5's RBF output layer.

The paper's output layer has one Euclidean RBF unit per class; unit i computes
``y_i = sum_j (x_j - w_ij)**2`` where ``x`` is the 84-wide F6 output and
``w_i`` is a fixed +1/-1 vector: a 7-wide, 12-tall stylised bitmap of digit i
(Fig. 3 of LeCun et al. 1998).  The paper shows its bitmaps only as a figure,
so lenet_native ships its own drawing as ASCII art in
``lenet_native/data/rbf_prototypes.txt``:

* optional header lines starting with ``"# "`` (comments),
* then ten blocks, digits 0..9 in order, separated by blank lines,
* each block 12 rows of exactly 7 characters, ``'#'`` = ink = +1 and
  ``'.'`` = background = -1.

A bitmap is flattened row-major (12 rows of 7) into the 84 prototype weights.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

__all__ = ["ROWS", "COLS", "N_DIGITS", "rbf_prototypes", "prototype_ascii",
           "parse_prototypes"]

ROWS = 12
COLS = 7
N_DIGITS = 10
_DATA_FILE = "rbf_prototypes.txt"


def _is_comment(line: str) -> bool:
    # A bitmap row consists only of '#' and '.', so "# text" cannot be one.
    return line == "#" or line.startswith("# ")


def parse_prototypes(text: str) -> np.ndarray:
    """Parse the prototype file format; return a (10, 12, 7) bool array (True = ink).

    Raises ValueError, naming the offending block/line, if the text is not
    exactly ten blocks of 12 rows x 7 characters of '#'/'.'.
    """
    lines = [ln.rstrip() for ln in text.splitlines()]

    # Header: comment and blank lines before the first bitmap row.
    pos = 0
    while pos < len(lines) and (lines[pos] == "" or _is_comment(lines[pos])):
        pos += 1

    blocks: list[list[str]] = []
    current: list[str] = []
    for lineno in range(pos, len(lines)):
        line = lines[lineno]
        if line == "":
            if current:
                blocks.append(current)
                current = []
            continue
        bad = set(line) - {"#", "."}
        if bad:
            raise ValueError(
                f"{_DATA_FILE}, line {lineno + 1}: invalid character(s) "
                f"{sorted(bad)!r} in bitmap row {line!r} (only '#' and '.' allowed; "
                "comments are only allowed in the header)")
        if len(line) != COLS:
            raise ValueError(
                f"{_DATA_FILE}, line {lineno + 1}: bitmap row {line!r} has "
                f"{len(line)} characters, expected {COLS}")
        current.append(line)
    if current:
        blocks.append(current)

    if len(blocks) != N_DIGITS:
        raise ValueError(f"{_DATA_FILE}: found {len(blocks)} bitmap blocks, "
                         f"expected {N_DIGITS} (digits 0..9)")
    for digit, block in enumerate(blocks):
        if len(block) != ROWS:
            raise ValueError(f"{_DATA_FILE}: bitmap of digit {digit} has "
                             f"{len(block)} rows, expected {ROWS}")

    return np.array([[[ch == "#" for ch in row] for row in block]
                     for block in blocks], dtype=bool)


@functools.lru_cache(maxsize=1)
def _bitmaps() -> np.ndarray:
    # files("lenet_native") / "data" / name, one segment at a time so that it
    # also works while lenet_native is a namespace package.
    path = resources.files("lenet_native").joinpath("data").joinpath(_DATA_FILE)
    bitmaps = parse_prototypes(path.read_text(encoding="ascii"))
    bitmaps.flags.writeable = False
    return bitmaps


def rbf_prototypes() -> np.ndarray:
    """The RBF head's prototypes: a new (10, 84) float32 array of +1 (ink) / -1.

    Row i is the bitmap of digit i flattened row-major (12 rows of 7).
    """
    return np.where(_bitmaps(), 1.0, -1.0).astype(np.float32).reshape(N_DIGITS, ROWS * COLS)


def prototype_ascii(digit: int) -> str:
    """The bitmap of ``digit`` (0..9) as 12 lines of 7 characters ('#' = ink)."""
    if isinstance(digit, bool) or not isinstance(digit, (int, np.integer)) \
            or not 0 <= digit < N_DIGITS:
        raise ValueError(f"digit must be an integer in 0..9, got {digit!r}")
    return "\n".join("".join("#" if ink else "." for ink in row)
                     for row in _bitmaps()[int(digit)])
