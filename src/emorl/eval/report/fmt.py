"""Number formatting shared by the report's sections: values, percentages, intervals, differences."""

from __future__ import annotations


def fmt(v, d: int = 3) -> str:
    return "–" if v is None else f"{v:.{d}f}"


def pct(v, d: int = 0) -> str:
    return "–" if v is None else f"{100 * v:.{d}f}%"


def ci(c: dict | None, as_pct: bool = False) -> tuple[str, str]:
    """(value, '[lo, hi]') of a {value|rate, lo, hi} dict; ('–', '') when there is nothing."""
    if not c:
        return "–", ""
    v = c.get("value", c.get("rate"))
    if v is None:
        return "–", ""
    if as_pct:
        return pct(v), f"[{pct(c['lo'])}, {pct(c['hi'])}]"
    return fmt(v), f"[{fmt(c['lo'], 2)}, {fmt(c['hi'], 2)}]"


def diff(c: dict) -> tuple[str, str]:
    return f"{c['diff']:+.3f}", f"[{c['lo']:+.2f}, {c['hi']:+.2f}]"
