"""Strict YAML reading for space files: safe types only, no duplicate keys, line numbers kept.

PyYAML follows YAML 1.1, where ``1e-5`` (no dot) is a string; search spaces are full of such
learning rates, so floats in scientific notation without a dot are resolved as numbers too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from tuner.errors import SpaceError

_FLOAT = re.compile(
    r"""^[-+]?(?:
        [0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
      | \.[0-9_]+(?:[eE][-+]?[0-9]+)?
      | [0-9][0-9_]*[eE][-+]?[0-9]+
      | \.(?:inf|Inf|INF)
      | \.(?:nan|NaN|NAN)
    )$""",
    re.X,
)


class _StrictLoader(yaml.SafeLoader):
    pass


# Replace the YAML 1.1 float resolver with one that also accepts 1e-5 and 1E+3.
_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


@dataclass(frozen=True)
class Document:
    """Parsed YAML plus the line number of every mapping key, by key path."""

    data: Any
    file: str
    lines: dict[tuple[str, ...], int]

    def line(self, path: tuple[str, ...]) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def error(self, path: tuple[str, ...], message: str) -> SpaceError:
        return SpaceError(message, file=self.file, path=".".join(path), line=self.line(path))


def load_yaml(text: str, file: str) -> Document:
    loader = _StrictLoader(text)
    lines: dict[tuple[str, ...], int] = {}
    try:
        node = loader.get_single_node()
        data = _build(loader, node, (), lines, file) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpaceError(f"invalid YAML: {problem}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        raise SpaceError(f"invalid YAML: {exc}", file=file) from None
    finally:
        loader.dispose()
    return Document(data, file, lines)


def _build(
    loader: _StrictLoader,
    node: yaml.Node,
    path: tuple[str, ...],
    lines: dict[tuple[str, ...], int],
    file: str,
) -> Any:
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and node.tag not in _PLAIN_TAGS:
        raise SpaceError(f"invalid YAML: tag {node.tag!r} is not allowed", file=file,
                         path=".".join(path), line=node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str | int | float | bool):
                raise SpaceError("mapping keys must be plain scalars", file=file,
                                 path=".".join(path), line=line)
            key = str(key)
            if key in out:
                raise SpaceError(
                    f"duplicate key {key!r} (first at line {lines[(*path, key)]})",
                    file=file, path=".".join((*path, key)), line=line,
                )
            lines[(*path, key)] = line
            out[key] = _build(loader, value_node, (*path, key), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, str(i)), lines, file) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
