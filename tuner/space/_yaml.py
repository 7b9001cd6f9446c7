"""Strict YAML reading for space files: safe types only, no duplicate keys, line numbers kept.

PyYAML follows YAML 1.1, where ``1e-5`` (no dot) is a string; search spaces are full of such
learning rates, so floats in scientific notation without a dot are resolved as numbers too.

Bounded work for any input: a space file is small, so the text, the nesting and the document
that aliases expand to are limited. An alias bomb (a few hundred bytes whose nested anchors expand
to billions of values) and thousands of nested brackets (recursion, and PyYAML's scanner is
quadratic in the depth) are refused in one line instead of eating memory or time.
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


MAX_BYTES = 1 << 20  # a space file, an --enqueue file: 1 MiB is far more than any needs
MAX_DEPTH = 32  # nested mappings and lists, aliases included
MAX_VALUES = 100_000  # values in the document once aliases and merge keys are expanded


class _StrictLoader(yaml.SafeLoader):
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # PyYAML composes recursively: refuse deep nesting before the stack (or the scanner's
        # quadratic bookkeeping of open brackets) does.
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Limit(f"nested deeper than {MAX_DEPTH} levels", mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Limit(Exception):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


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
    if len(text) > MAX_BYTES:
        raise SpaceError(f"the file has {len(text):,} characters; a space file may have at most "
                         f"{MAX_BYTES:,}", file=file)
    loader = _StrictLoader(text)
    lines: dict[tuple[str, ...], int] = {}
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expansion(node)
        data = _build(loader, node, (), lines, file) if node is not None else None
    except _Limit as exc:
        raise SpaceError(f"invalid YAML: {exc}", file=file, line=exc.line) from None
    except RecursionError:  # not reached within the limits above; kept as a last guard
        raise SpaceError("invalid YAML: nested too deeply", file=file) from None
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


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand to more than MAX_VALUES values or MAX_DEPTH
    levels, or refer to themselves, before anything is expanded. Each node is measured once
    (aliases share nodes), so this is linear in the file."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, depth) once expanded
    open_nodes: set[int] = set()

    def measure(node: yaml.Node, level: int) -> tuple[int, int]:
        key = id(node)
        if key in measured:
            size, depth = measured[key]
        elif key in open_nodes:
            raise _Limit("an alias refers to the value that contains it",
                         node.start_mark.line + 1)
        else:
            if level > MAX_DEPTH:
                raise _Limit(f"nested deeper than {MAX_DEPTH} levels (with aliases expanded)",
                             node.start_mark.line + 1)
            open_nodes.add(key)
            size, depth = 1, 1
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            for child in children:
                child_size, child_depth = measure(child, level + 1)
                size += child_size
                depth = max(depth, child_depth + 1)
                if size > MAX_VALUES:
                    break
            open_nodes.discard(key)
            measured[key] = (size, depth)
        if size > MAX_VALUES:
            raise _Limit(f"the document expands to more than {MAX_VALUES:,} values (aliases "
                         "repeated inside aliases?)", node.start_mark.line + 1)
        if level + depth - 1 > MAX_DEPTH:
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels (with aliases expanded)",
                         node.start_mark.line + 1)
        return size, depth

    measure(root, 1)


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
