"""Reading YAML config text so that numbers are numbers: ``1e-3`` is the float 0.001.

PyYAML implements YAML 1.1, whose float pattern needs a dot: ``lr: 1e-3`` comes back as the
string ``"1e-3"`` (and ``3.0e-4`` as a float). :func:`load` is ``yaml.safe_load`` with YAML 1.2's
float pattern added, so ``1e-3``, ``-2E5`` and ``1.5e3`` are floats too. Every place that reads a
config or a ``--set`` value uses it (``marl_net.experiment``).
"""

from __future__ import annotations

import re
from typing import IO, Any

import yaml


class NumbersLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also resolves exponent-only floats (``1e-3``) as floats."""


NumbersLoader.add_implicit_resolver(  # copies SafeLoader's resolvers first: SafeLoader itself is untouched
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load(stream: str | IO[str]) -> Any:
    """Parse YAML text or a stream as ``yaml.safe_load`` does, with ``1e-3`` a float."""
    return yaml.load(stream, Loader=NumbersLoader)
