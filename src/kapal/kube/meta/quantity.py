"""Resource quantities (`500m`, `1Gi`, `2e3`) as exact fractions.

Used wherever CPU and memory are compared or summed: validation, quotas,
scheduling, cgroup limits. Fractions keep `100m + 900m == 1` exact.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from kapal.errors import Invalid

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": Fraction(1),
            "k": Fraction(10**3), "M": Fraction(10**6), "G": Fraction(10**9), "T": Fraction(10**12),
            "P": Fraction(10**15), "E": Fraction(10**18)}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")

QUANTITY_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def parse_quantity(value: str | int | float) -> Fraction:
    """The exact value of a quantity; raises Invalid with upstream's message otherwise."""
    if isinstance(value, bool):
        raise Invalid(QUANTITY_ERROR)
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Invalid(QUANTITY_ERROR)
        return Fraction(str(value))
    m = _QUANTITY.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise Invalid(QUANTITY_ERROR)
    number = Fraction(m.group(1))
    suffix = m.group(2) or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * Fraction(10) ** int(suffix[1:])


def is_quantity(value: object) -> bool:
    try:
        parse_quantity(value)  # type: ignore[arg-type]
    except Invalid:
        return False
    return True


def milli(value: str | int | float) -> int:
    """A quantity in thousandths, rounded up (CPU: 0.1 → 100)."""
    return math.ceil(parse_quantity(value) * 1000)


def whole(value: str | int | float) -> int:
    """A quantity rounded up to an integer (memory bytes, pod counts)."""
    return math.ceil(parse_quantity(value))
