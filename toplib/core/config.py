"""PruneConfig, stored beside every ToP checkpoint, and the checks and parsers every
configuration shares. Field help (and the release's knob name) is metadata the CLI is built from.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .importance import RELEASE_BIN_EPS

_FLAG_TYPES = {"int": int, "float": float, "str": str}


def knob(default: Any, help: str, paper: str | None = None, **kwargs) -> Any:  # noqa: A002
    """A dataclass field with its one-line help (and the release's name of the knob)."""
    return field(default=default, metadata={"help": help, "paper": paper}, **kwargs)


def add_knob_arguments(parser: argparse.ArgumentParser, fields, keep_defaults: bool = False,
                       as_text: Sequence[str] = ()) -> None:
    """One ``--name`` (and ``--PAPER_NAME``) flag per knob field; booleans get ``--x/--no-x``.
    Defaults are None unless ``keep_defaults``; fields in ``as_text`` take text ('2-11')."""
    for f in (f for f in fields if "help" in f.metadata):
        paper = f.metadata["paper"]
        flags = [f"--{f.name.replace('_', '-')}"] + ([f"--{paper}"] if paper else [])
        default = f.default if keep_defaults else None
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        kind = str(f.type).split("|")[0].strip()
        how = ({"action": argparse.BooleanOptionalAction} if kind == "bool" else
               {"type": str if f.name in as_text else _FLAG_TYPES[kind]})
        parser.add_argument(*flags, dest=f.name, default=default, help=f.metadata["help"], **how)


def check(name: str, value, ok: bool, allowed: str) -> None:
    """Raise a ValueError naming the parameter, its value and what is allowed."""
    if not ok:
        raise ValueError(f"{name}={value!r} is invalid: {allowed}")


def check_choice(obj, name: str, choices: Sequence[str]) -> None:
    """A text field must be one of ``choices``."""
    value = getattr(obj, name)
    check(name, value, isinstance(value, str) and value in choices,
          f"choose one of {', '.join(choices)}")


def is_integer(value) -> bool:
    """An integer (Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite(value) -> bool:
    """A finite real number (an int or a float, not a bool, nan or inf)."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value))


def check_positive_ints(obj, names: Sequence[str], optional: bool = True) -> None:
    """Every field in ``names`` is an integer >= 1 (or None if ``optional``), stored as int."""
    for name in names:
        value = getattr(obj, name)
        ok = (value is None and optional) or (is_integer(value) and value >= 1)
        check(name, value, ok, "must be an integer >= 1" + (" or None" if optional else ""))
        if value is not None:
            setattr(obj, name, int(value))


def check_finite(obj, names: Sequence[str], ok: Callable[[float], bool], allowed: str) -> None:
    """Every field in ``names`` is a finite number for which ``ok`` holds."""
    for name in names:
        value = getattr(obj, name)
        check(name, value, is_finite(value) and ok(value), f"must be a finite number {allowed}")


def check_bools(obj, names: Sequence[str]) -> None:
    """Every field in ``names`` is True or False (not a truthy string or number)."""
    for name in names:
        value = getattr(obj, name)
        check(name, value, isinstance(value, bool), "must be True or False")


def check_device(device, name: str = "device") -> str:
    """``device`` as a torch device string, after checking that this machine has it."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    check(name, device, parsed is not None and parsed.type in ("cpu", "cuda", "mps"),
          "use cpu, cuda, cuda:N or mps")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        check(name, device, (parsed.index or 0) < count,
              f"this machine has {count} CUDA device(s) (torch {torch.__version__}"
              f"{', a CPU-only build' if torch.version.cuda is None else ''}); use cpu")
    if parsed.type == "mps":
        check(name, device, torch.backends.mps.is_available(), "MPS is not available; use cpu")
    return str(parsed)


def parse_list(text: str | float | int | Sequence | None, cast: Callable = float,
               name: str = "value") -> list:
    """'0.3,0.5' -> [0.3, 0.5]; a number -> [number]; a sequence -> cast items; None/'' -> []."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return []
    if not isinstance(text, str):
        return [cast(x) for x in text] if isinstance(text, (list, tuple)) else [cast(text)]
    try:
        return [cast(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a comma-separated list of "
                         f"{cast.__name__}") from None


LAYERS_FORM = "use '2-11' (a range, start <= end) or '2,3,5' (layer numbers >= 0)"


def parse_layers(text: str | Sequence[int] | None, name: str = "prune_location"
                 ) -> tuple[int, ...] | None:
    """'2-11' or '2,3,5' (or a sequence of integers) -> tuple of layers.

    >>> parse_layers("2-4,7")
    (2, 3, 4, 7)
    """
    if text is None:
        return None
    if not isinstance(text, str):
        items = list(text) if isinstance(text, (list, tuple, range)) else [text]
        check(name, text, all(is_integer(x) for x in items), "give integer layer numbers")
        return tuple(int(x) for x in items)
    layers: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            first, last = -1, -2
        check(name, text, 0 <= first <= last, LAYERS_FORM)
        layers.extend(range(first, last + 1))
    return tuple(layers)


def _sorted_layers(layers, name: str) -> tuple[int, ...] | None:
    layers = parse_layers(layers, name)  # the Python API may pass '2-11' too
    return None if layers is None else tuple(sorted(set(layers)))


BIN_ROUNDINGS = ("exact", "release")
IMPORTANCE_ROWS = ("alive", "all")


@dataclass
class PruneConfig:
    """Where and how finely tokens are pruned; stored beside every ToP checkpoint."""

    prune_location: tuple[int, ...] | None = knob(
        None, "layers that receive pruned inputs, e.g. 2-11 (default: see resolve)",
        "PRUNE_LOCATION")
    bin_num: int = knob(25, "rank bins (one gate each) per prune layer", "BIN_NUM")
    droprate_init: float = knob(0.01, "initial P(bin gate closed) (release: 0.01)")
    rank_distill_layers: tuple[int, ...] | None = knob(
        None, "student layers rank-distilled (default: the release's, the first third)")
    bin_rounding: str = knob(
        "exact", "rank to bin: exact floor(r/m*BIN_NUM), or release: floor(r/(m+1e-6)*BIN_NUM) "
        "in float32 (some ranks one bin lower below 32 tokens)")
    importance_rows: str = knob(
        "alive", "query rows importance averages: alive (real, unpruned) or all (the release: "
        "padding and pruned rows too)")

    def __post_init__(self):
        check_positive_ints(self, ("bin_num",), optional=False)
        check_finite(self, ("droprate_init",), lambda x: 0.0 < x < 1.0, "in (0, 1)")
        self.prune_location = _sorted_layers(self.prune_location, "prune_location")
        check("prune_location", self.prune_location, self.prune_location != (),
              "give at least one layer")
        self.rank_distill_layers = _sorted_layers(self.rank_distill_layers, "rank_distill_layers")
        check_choice(self, "importance_rows", IMPORTANCE_ROWS)
        check_choice(self, "bin_rounding", BIN_ROUNDINGS)

    def resolve(self, num_layers: int) -> "PruneConfig":
        """Fill the depth-dependent defaults and check them against a model's depth: pruning
        starts at layer max(N/6, 2) (1 below 6 layers), so 2..11 on 12 layers as the release."""
        check("num_hidden_layers", num_layers, num_layers >= 2,
              "ToP prunes the inputs of layers 1..L-1, so the model needs at least 2 layers")
        first = max(1, min(2, num_layers // 3), num_layers // 6)
        loc = self.prune_location or tuple(range(first, num_layers))
        bad = [x for x in loc if not 1 <= x < num_layers]
        check("prune_location", loc, not bad,
              f"layers must lie in 1..{num_layers - 1} for a {num_layers}-layer model")
        distill = self.rank_distill_layers
        if distill is None:  # release: layers 1 .. N/3 - 1 (from the first importance layer)
            distill = tuple(range(loc[0] - 1, max(loc[0], num_layers // 3)))
        bad = [x for x in distill if not 0 <= x < num_layers]
        check("rank_distill_layers", distill, not bad, f"layers must lie in 0..{num_layers - 1}")
        return dataclasses.replace(self, prune_location=tuple(loc), rank_distill_layers=distill)

    @property
    def bin_eps(self) -> float:
        """The rank-to-bin offset of ``bin_rounding`` (``core.importance.rank_bins``)."""
        return RELEASE_BIN_EPS if self.bin_rounding == "release" else 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
