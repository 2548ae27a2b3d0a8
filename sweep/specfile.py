"""Reading a spec file: bounded in size, nesting and alias expansion, strict about repeated keys.

A spec is a few dozen lines of YAML, but a file can be anything: a binary, a file that cannot be
read, thousands of nested brackets, or a "billion laughs" — nine anchors each naming ten aliases of
the one before, 342 bytes that stand for 10⁹ values. Each is refused with one `SweepError` line
before any value is built:

- the file must be at most `MAX_SPEC_BYTES` of UTF-8 text;
- nesting deeper than `MAX_DEPTH` collections is refused where it happens (line and column);
- every node counts with everything it holds, an alias as often as it is used: a document that
  stands for more than `MAX_NODES` values is refused while it is being composed, so memory and time
  stay bounded by the file's size, not by what its aliases expand to;
- an alias inside the value it names (a cycle) is refused;
- a key written twice in one mapping is refused, naming the key and both lines (plain YAML keeps
  the last one silently). Merge keys (``<<: *base``) still override, as YAML defines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError

from backdoor_sweep.errors import SweepError, cut, shown

#: a spec file larger than this is refused unread (the largest preset is ~2 kB)
MAX_SPEC_BYTES = 1_000_000
#: collections nested deeper than this are refused (a spec needs 3: grid, an axis, its values)
MAX_DEPTH = 32
#: values (scalars, lists, mappings) a document may stand for, aliases counted as often as used
MAX_NODES = 100_000

MERGE_TAG = "tag:yaml.org,2002:merge"


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the limits of the module docstring."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        #: id(node) -> values it stands for; absent while the node is being composed
        self._size: dict[int, int] = {}

    def compose_node(self, parent, index):  # noqa: D102 (PyYAML's hook)
        mark = self.peek_event().start_mark
        if self.check_event(yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._size:
                raise ComposerError(
                    None, None, "an alias must not be used inside the value it names", mark
                )
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(
                None, None, f"nesting must be at most {MAX_DEPTH} levels deep", mark
            )
        node = super().compose_node(parent, index)
        self._depth -= 1
        size = 1 + self._children_size(node)
        if size > MAX_NODES:
            raise ComposerError(
                None,
                None,
                f"a spec must stand for at most {MAX_NODES:,} values (an alias counts "
                "all it names, each time)",
                mark,
            )
        self._size[id(node)] = size
        return node

    def _children_size(self, node: yaml.Node) -> int:
        if isinstance(node, yaml.SequenceNode):
            return sum(self._size[id(child)] for child in node.value)
        if isinstance(node, yaml.MappingNode):
            return sum(self._size[id(k)] + self._size[id(v)] for k, v in node.value)
        return 0

    def construct_mapping(self, node, deep=False):  # noqa: D102 (PyYAML's hook)
        if isinstance(node, yaml.MappingNode):
            self._refuse_repeated_keys(node)
        return super().construct_mapping(node, deep=deep)

    def _refuse_repeated_keys(self, node: yaml.MappingNode) -> None:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            try:
                if key in first_line:
                    raise ConstructorError(
                        None,
                        None,
                        f"key {shown(key)} must appear once per mapping; "
                        f"it is also at line {first_line[key] + 1}",
                        key_node.start_mark,
                    )
                first_line[key] = key_node.start_mark.line
            except TypeError:  # an unhashable key: PyYAML's own check names it
                continue


def read_text(path: Path) -> str:
    """The file's text: at most `MAX_SPEC_BYTES`, UTF-8; one line for anything else."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as err:
        raise SweepError(
            f"spec file {shown(str(path))} must be readable; got {cut(err.strerror or str(err))}"
        ) from None
    return spec_text(data, f"spec file {shown(str(path))}")


def spec_text(data: bytes, what: str = "spec") -> str:
    """``data`` as text: at most `MAX_SPEC_BYTES` of UTF-8; ``what`` starts the error line."""
    if len(data) > MAX_SPEC_BYTES:
        raise SweepError(f"{what} must be at most {MAX_SPEC_BYTES:,} bytes; got more")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise SweepError(
            f"{what} must be UTF-8 text; got byte 0x{data[err.start]:02x} at offset {err.start}"
        ) from None


def read_spec_file(path: Path) -> Any:
    """The YAML document in ``path`` as Python values, within the limits above."""
    return read_spec_text(read_text(path), f"spec file {shown(str(path))}")


def read_spec_bytes(data: bytes, what: str = "spec") -> Any:
    """A spec sent as bytes (the team service's request body), within the same limits."""
    return read_spec_text(spec_text(data, what), what)


def read_spec_text(text: str, what: str = "spec") -> Any:
    """The YAML document in ``text`` as Python values, within the limits above; ``what`` (e.g.
    ``spec file PATH``) starts each error line."""
    loader = None
    try:
        loader = SpecLoader(text)  # refuses control characters on construction
        return loader.get_single_data()
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise SweepError(f"{what} is not valid YAML{where}: {cut(problem, 160)}") from None
    except RecursionError:  # a limit above should come first; this keeps it one line regardless
        raise SweepError(f"{what} is nested too deeply; at most {MAX_DEPTH} levels") from None
    finally:
        if loader is not None:
            loader.dispose()
