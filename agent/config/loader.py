"""Load a YAML config file into a pydantic model; every error is one line naming file:line.

Steps: read the file, parse YAML while recording the line of every key, value and list item
(by path), substitute ``${...}`` references inside string values, validate with the model, and
turn pydantic's errors into a ``ConfigError`` that points at the offending line (the first
error; ``ConfigError.more`` holds the others, each one line).

Substitution (string values only, after parsing, so it never creates YAML structure)::

    ${VAR}            environment variable; an error when unset
    ${VAR:-default}   default when VAR is unset or empty
    ${cred:NAME}      systemd credential $CREDENTIALS_DIRECTORY/NAME (registered as a secret)
    ${file:/abs/path} a file's content, one trailing newline stripped (registered as a secret)
    $$                a literal $ (so $${VAR} gives ${VAR})

Environment values whose variable name looks secret (TOKEN, PASSWORD, SECRET, API_KEY, ...)
are registered as secrets too.
"""

from __future__ import annotations

import collections.abc
import difflib
import os
import re
import types
import typing
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from agent.config.secrets import read_credential, register_secret, scrub
from agent.config.tagged import TaggedModels
from agent.errors import ConfigError

__all__ = ["ValueErrorAt", "describe_kind", "load_config", "load_config_text"]

M = TypeVar("M", bound=pydantic.BaseModel)

_PathT = tuple[Hashable, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_VAR_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_SECRET_NAME_RE = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|API_?KEY|PRIVATE", re.IGNORECASE)
_PLAIN_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_REFERENCE_HELP = ("write ${VAR}, ${VAR:-default}, ${cred:NAME}, ${file:/path}, "
                   "or $$ for a literal $")
_STRIP_PREFIXES = ("Value error, ", "Assertion failed, ")
_SEQUENCE_ORIGINS = (list, set, frozenset, collections.abc.Sequence, collections.abc.Set,
                     collections.abc.MutableSequence, collections.abc.MutableSet,
                     collections.abc.Collection, collections.abc.Iterable)
_MAPPING_ORIGINS = (dict, collections.abc.Mapping, collections.abc.MutableMapping)


def load_config(path: str | Path, model: type[M], *,
                env: Mapping[str, str] | None = None) -> M:
    """Read, substitute and validate the YAML config at *path*; raise ConfigError if invalid."""
    filename = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc}", file=filename) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError("cannot read config: not valid UTF-8 text", file=filename,
                          line=line) from None
    return load_config_text(text, model, filename=filename, env=env)


def load_config_text(text: str, model: type[M], *, filename: str,
                     env: Mapping[str, str] | None = None) -> M:
    """Like load_config, for config *text*; *filename* is only used in error messages."""
    environ: Mapping[str, str] = os.environ if env is None else env
    data, lines = _parse_yaml(text, filename)
    data = _Substituter(environ, lines, filename).walk(data, ())
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _validation_error(exc, model, data, lines, filename) from None


# --------------------------------------------------------------------------- YAML + lines


class _Lines:
    """1-based lines by path: ``at`` is where a value is, ``key`` where its mapping key is."""

    def __init__(self) -> None:
        self.at: dict[_PathT, int] = {}
        self.key: dict[_PathT, int] = {}

    def find(self, path: _PathT, *, key: bool = False) -> int | None:
        """Line of the longest prefix of *path* that has one (the key's line if *key*)."""
        if key and path in self.key:
            return self.key[path]
        for end in range(len(path), -1, -1):
            line = self.at.get(path[:end])
            if line is not None:
                return line
        return None


class _DuplicateKeyError(Exception):
    def __init__(self, key: Hashable, line: int, path: _PathT) -> None:
        super().__init__(key)
        self.key = key
        self.line = line
        self.path = path


class _TooLargeError(Exception):
    """A value the YAML layer cannot (or must not) build; ``line`` is 1-based."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


MAX_INT_DIGITS = 30
"""An unquoted integer longer than this is refused: no setting needs one, and Python refuses
to convert decimal strings over 4,300 digits (a traceback from the YAML layer otherwise)."""
MAX_EXPANDED_NODES = 100_000
"""A document whose aliases expand it beyond this many values (and ten times its own size) is
refused: a "billion laughs" config would otherwise take minutes and gigabytes to validate."""


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader (libyaml's when present: ~6x faster) that records the line of every key,
    value and item, rejects duplicates, huge integers and alias bombs."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.lines = _Lines()

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        """An integer scalar; too many digits is a one-line error, not a traceback."""
        text = str(node.value).replace("_", "").lstrip("+-")
        if len(text) > MAX_INT_DIGITS:
            raise _TooLargeError(f"integer with {len(text)} digits is too large (at most "
                                 f"{MAX_INT_DIGITS}; quote it if it is text)",
                                 node.start_mark.line + 1)
        value: int = super().construct_yaml_int(node)
        return value

    def load_document(self) -> Any:
        """Compose the single document, record its lines, then construct it."""
        node = self.get_single_node()
        if node is None:
            return None
        self.lines.at[()] = node.start_mark.line + 1
        self._record(node, (), set())
        _refuse_alias_bombs(node)
        return self.construct_document(node)

    def _record(self, node: yaml.Node, path: _PathT, seen: set[int]) -> None:
        if id(node) in seen:  # an alias (or a recursive one): already walked at its anchor
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Hashable, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = self.construct_object(key_node)
                line = key_node.start_mark.line + 1
                if key in first:
                    raise _DuplicateKeyError(key, line, path)
                first[key] = line
                child = (*path, key)
                self.lines.key[child] = line
                if isinstance(value_node, yaml.ScalarNode):
                    self.lines.at[child] = value_node.start_mark.line + 1
                else:
                    self.lines.at[child] = line
                self._record(value_node, child, seen)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                child = (*path, index)
                self.lines.at[child] = item.start_mark.line + 1
                self._record(item, child, seen)


_LineLoader.add_constructor("tag:yaml.org,2002:int", _LineLoader.construct_yaml_int)


def _refuse_alias_bombs(root: yaml.Node) -> None:
    """Raise _TooLargeError when aliases make the document expand far beyond its own size."""
    sizes: dict[int, int] = {}
    distinct = 0

    def size(node: yaml.Node, active: set[int]) -> int:
        nonlocal distinct
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in active:  # a recursive alias: reported by the substitution step
            return 1
        distinct += 1
        total = 1
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            active.add(id(node))
            children = ([v for pair in node.value for v in pair]
                        if isinstance(node, yaml.MappingNode) else node.value)
            for child in children:
                total += size(child, active)
            active.discard(id(node))
        sizes[id(node)] = total
        return total

    expanded = size(root, set())
    if expanded <= MAX_EXPANDED_NODES or expanded <= 10 * distinct:
        return
    where, what = root, expanded
    if isinstance(root, yaml.MappingNode) and root.value:
        # name the top-level key that expands most (the last of equals: uses follow anchors)
        what = max(sizes.get(id(value), 0) for _, value in root.value)
        where = [key for key, value in root.value if sizes.get(id(value), 0) == what][-1]
    raise _TooLargeError(
        f"YAML aliases expand this value to {what:,} values ({distinct:,} written), beyond "
        f"the limit of {MAX_EXPANDED_NODES:,}: an alias bomb?", where.start_mark.line + 1)


def _path_at_line(lines: _Lines, line: int) -> str | None:
    """The deepest recorded path whose value is on *line* (for naming a field)."""
    paths = [path for path, at in lines.key.items() if at == line and path]
    paths += [path for path, at in lines.at.items() if at == line and path]
    return _format_path(max(paths, key=len)) if paths else None


def _parse_yaml(text: str, filename: str) -> tuple[dict[Any, Any], _Lines]:
    loader: _LineLoader | None = None
    try:
        loader = _LineLoader(text)
        try:
            data = loader.load_document()
        finally:
            loader.dispose()
    except _TooLargeError as exc:
        field = _path_at_line(loader.lines, exc.line) if loader is not None else None
        raise ConfigError(str(exc), file=filename, line=exc.line, field=field) from None
    except _DuplicateKeyError as dup:
        raise ConfigError(f"duplicate key {_show_key(dup.key)}", file=filename, line=dup.line,
                          field=_format_path(dup.path) or None) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = ", ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        raise ConfigError(_one_line(f"invalid YAML: {problem}"), file=filename,
                          line=mark.line + 1 if mark else None) from None
    except yaml.reader.ReaderError as exc:
        character = exc.character
        what = f"#x{character:04x}" if isinstance(character, int) else repr(character)
        raise ConfigError(_one_line(f"invalid YAML: unacceptable character {what}: {exc.reason}"),
                          file=filename, line=text[:exc.position].count("\n") + 1) from None
    except yaml.YAMLError as exc:
        raise ConfigError(_one_line(f"invalid YAML: {exc}"), file=filename) from None
    if data is None:
        raise ConfigError("config is empty", file=filename)
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a mapping of keys to values, not {describe_kind(data)}",
                          file=filename, line=1)
    return data, loader.lines


# --------------------------------------------------------------------------- substitution


class _SubstitutionError(Exception):
    pass


class _Substituter:
    """Expands ``${...}`` in every string value, building new containers (aliases stay shared)."""

    def __init__(self, env: Mapping[str, str], lines: _Lines, filename: str) -> None:
        self.env = env
        self.lines = lines
        self.filename = filename
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def walk(self, value: Any, path: _PathT) -> Any:
        if isinstance(value, str):
            try:
                return self.expand(value)
            except _SubstitutionError as exc:
                raise ConfigError(scrub(_one_line(str(exc))), file=self.filename,
                                  line=self.lines.find(path),
                                  field=_format_path(path) or None) from None
        if not isinstance(value, dict | list):
            return value
        if id(value) in self.done:
            return self.done[id(value)]
        if id(value) in self.active:
            raise ConfigError("recursive alias: a value contains itself", file=self.filename,
                              line=self.lines.find(path), field=_format_path(path) or None)
        self.active.add(id(value))
        result: Any
        if isinstance(value, dict):
            result = {k: self.walk(v, (*path, k)) for k, v in value.items()}
        else:
            result = [self.walk(v, (*path, i)) for i, v in enumerate(value)]
        self.active.discard(id(value))
        self.done[id(value)] = result
        return result

    def expand(self, text: str) -> str:
        if "$" not in text:
            return text
        out: list[str] = []
        pos = 0
        while (dollar := text.find("$", pos)) >= 0:
            out.append(text[pos:dollar])
            following = text[dollar + 1:dollar + 2]
            if following == "$":
                out.append("$")
                pos = dollar + 2
            elif following != "{":
                out.append("$")
                pos = dollar + 1
            else:
                end = text.find("}", dollar + 2)
                if end < 0:
                    fragment = _shorten(text[dollar:])
                    raise _SubstitutionError(
                        f"malformed reference '{fragment}' (no closing }}); {_REFERENCE_HELP}")
                out.append(self.resolve(text[dollar + 2:end]))
                pos = end + 1
        out.append(text[pos:])
        return "".join(out)

    def resolve(self, ref: str) -> str:
        if ref.startswith("cred:"):
            try:
                value = read_credential(ref[5:], self.env)
            except ValueError as exc:
                raise _SubstitutionError(str(exc)) from None
            register_secret(value)
            return value
        if ref.startswith("file:"):
            value = _read_file(ref[5:])
            register_secret(value)
            return value
        match = _VAR_RE.fullmatch(ref)
        if match is None:
            raise _SubstitutionError(
                f"malformed reference '${{{_shorten(ref)}}}'; {_REFERENCE_HELP}")
        name, default = match.group(1), match.group(2)
        found = self.env.get(name)
        if default is not None and not found:
            found = default
        if found is None:
            raise _SubstitutionError(f"environment variable {name} is not set")
        if _SECRET_NAME_RE.search(name):
            register_secret(found)
        return found


def _read_file(path: str) -> str:
    if not os.path.isabs(path):
        raise _SubstitutionError(f"${{file:...}} needs an absolute path, not '{path}'")
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise _SubstitutionError(f"cannot read file {path}: {exc.strerror or exc}") from None
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _SubstitutionError(f"cannot read file {path}: not valid UTF-8 text") from None
    return value[:-2] if value.endswith("\r\n") else value.removesuffix("\n")


# --------------------------------------------------------------------------- validation errors


class ValueErrorAt(ValueError):
    """Raised by a model validator about a field deeper than the model it runs on.

    ``path`` is relative to that model's own location, e.g. ``("sites", 0, "checks", 1)`` from
    the root model, so the error can still name the right file line and field.
    """

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _validation_error(exc: pydantic.ValidationError, model: type[pydantic.BaseModel],
                      data: Any, lines: _Lines, filename: str) -> ConfigError:
    """One ConfigError for pydantic's first error, carrying one for every other field that has
    errors (``more``, in file order). The alternatives of a union that all failed on one field
    become one line: "Input should be a valid string, a valid integer or a valid number"."""
    by_field: dict[tuple[int | None, str | None], list[ConfigError]] = {}
    for error in exc.errors(include_url=False):
        one = _error_at(error, model, data, lines, filename)
        by_field.setdefault((one.line, one.field), []).append(one)
    found = [_merged(group) for group in by_field.values()]
    first, rest = found[0], found[1:]
    rest.sort(key=lambda e: (e.line is None, e.line or 0))
    return ConfigError(first.problem, file=first.file, line=first.line, field=first.field,
                       more=tuple(rest))


_SHOULD_BE = "Input should be "


def _merged(group: list[ConfigError]) -> ConfigError:
    """The errors of one field as one: union alternatives joined, else the first."""
    first = group[0]
    problems = list(dict.fromkeys(e.problem for e in group))
    if len(problems) < 2 or not all(p.startswith(_SHOULD_BE) for p in problems):
        return first
    options = [p.removeprefix(_SHOULD_BE) for p in problems]
    joined = ", ".join(options[:-1]) + " or " + options[-1]
    return ConfigError(_SHOULD_BE + joined, file=first.file, line=first.line,
                       field=first.field)


def _error_at(error: Any, model: type[pydantic.BaseModel], data: Any, lines: _Lines,
              filename: str) -> ConfigError:
    loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    path = _real_path(data, loc)
    nested = ctx.get("error")
    if isinstance(nested, ValueErrorAt):
        path = _real_path(data, (*path, *nested.path))
    line = lines.find(path)
    if kind == "extra_forbidden":
        key = loc[-1] if loc else "?"
        line = lines.find(path, key=True)
        message = f"unknown key {_show_key(key)}"
        suggestion = _suggest(model, path[:-1], data, key)
        if suggestion:
            message += f"; did you mean '{suggestion}'?"
    elif kind == "missing":
        message = f"required key {_show_key(loc[-1] if loc else '?')} is missing"
    elif kind == "union_tag_not_found" and "discriminator" in ctx:
        message = f"required key {ctx['discriminator']} is missing"
    elif kind == "union_tag_invalid" and {"discriminator", "tag", "expected_tags"} <= ctx.keys():
        tag_key = str(ctx["discriminator"]).strip("'")
        if _has_key(_at(data, path), tag_key):
            path = (*path, tag_key)
            line = lines.find(path)
        message = f"'{ctx['tag']}' is not one of {ctx['expected_tags']}"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"expected a mapping of keys to values, not {describe_kind(error.get('input'))}"
    elif kind == "list_type":
        message = f"expected a list, not {describe_kind(error.get('input'))}"
    else:
        message = str(error["msg"])
        for prefix in _STRIP_PREFIXES:
            message = message.removeprefix(prefix)
    return ConfigError(scrub(_one_line(message)), file=filename, line=line,
                       field=_format_path(path) or None)


def _real_path(data: Any, loc: tuple[Any, ...]) -> _PathT:
    """The part of pydantic's *loc* that exists in *data* (drops union/tag segments)."""
    path: list[Hashable] = []
    current = data
    for segment in loc:
        in_dict = isinstance(current, dict) and _has_key(current, segment)
        in_list = (isinstance(current, list) and isinstance(segment, int)
                   and not isinstance(segment, bool) and 0 <= segment < len(current))
        if in_dict or in_list:
            current = current[segment]
            path.append(segment)
    return tuple(path)


def _has_key(mapping: Any, key: Any) -> bool:
    try:
        return isinstance(mapping, dict) and key in mapping
    except TypeError:
        return False


def _at(data: Any, path: _PathT) -> Any:
    for segment in path:
        data = data[segment]
    return data


def _suggest(model: type[pydantic.BaseModel], parent: _PathT, data: Any,
             key: Any) -> str | None:
    """The closest allowed key of the model at *parent*, if that model can be determined."""
    if not isinstance(key, str):
        return None
    annotation: Any = model
    current = data
    for segment in parent:
        annotation = _child_annotation(annotation, segment, current)
        if annotation is None:
            return None
        current = current[segment]
    target = _single_model(annotation, current)
    if target is None:
        return None
    names = [field.alias or name for name, field in target.model_fields.items()]
    matches = difflib.get_close_matches(key, names, n=1)
    return matches[0] if matches else None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def _alternatives(annotation: Any) -> list[Any]:
    """Flatten Annotated, type aliases, Optional and unions into the candidate types."""
    alias_type = getattr(typing, "TypeAliasType", None)  # PEP 695 ``type X = ...`` (3.12+)
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            tagged = [m for m in annotation.__metadata__ if isinstance(m, TaggedModels)]
            if tagged:
                return tagged  # resolved against the data by _narrow
            annotation = typing.get_args(annotation)[0]
        elif alias_type is not None and isinstance(annotation, alias_type):
            annotation = annotation.__value__
        else:
            break
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        result: list[Any] = []
        for member in typing.get_args(annotation):
            result.extend(_alternatives(member))
        return result
    if annotation is type(None):
        return []
    return [annotation]


def _narrow(candidates: list[Any], data: Any) -> list[Any]:
    """Keep the union members that *data* can be; models are told apart by Literal fields."""
    resolved = [c.model_for(data) if isinstance(c, TaggedModels) else c for c in candidates]
    candidates = [c for c in resolved if c is not None]
    models = [c for c in candidates if _is_model(c)]
    if len(models) < 2 or not isinstance(data, dict):
        return candidates
    fitting = [m for m in models if _literals_match(m, data)]
    return [c for c in candidates if not _is_model(c) or c in fitting]


def _literals_match(model: type[pydantic.BaseModel], data: dict[Any, Any]) -> bool:
    for name, field in model.model_fields.items():
        key = field.alias or name
        options = _alternatives(field.annotation)
        literals = [o for o in options if typing.get_origin(o) is typing.Literal]
        if not _has_key(data, key):
            if literals and field.is_required():
                return False  # a required tag (e.g. ``type: checkout``) that is absent
            continue
        if literals and len(literals) == len(options):
            allowed = {arg for lit in literals for arg in typing.get_args(lit)}
            if data[key] not in allowed:
                return False
    return True


def _single_model(annotation: Any, data: Any) -> type[pydantic.BaseModel] | None:
    models = [c for c in _narrow(_alternatives(annotation), data) if _is_model(c)]
    return models[0] if len(models) == 1 else None


def _child_annotation(annotation: Any, segment: Hashable, data: Any) -> Any:
    """The annotation of ``data[segment]`` given that *data* has *annotation*, or None."""
    for candidate in _narrow(_alternatives(annotation), data):
        if _is_model(candidate):
            if isinstance(segment, str):
                for name, field in candidate.model_fields.items():
                    if segment in (name, field.alias):
                        return field.annotation
            continue
        origin = typing.get_origin(candidate)
        args = typing.get_args(candidate)
        if origin is tuple and isinstance(segment, int) and args:
            if len(args) == 2 and args[1] is Ellipsis:
                return args[0]
            return args[segment] if 0 <= segment < len(args) else None
        if origin in _SEQUENCE_ORIGINS and isinstance(segment, int) and args:
            return args[0]
        if origin in _MAPPING_ORIGINS and len(args) == 2:
            return args[1]
    return None


# --------------------------------------------------------------------------- formatting


def _format_path(path: _PathT) -> str:
    """``('sites', 3, 'checks', 0, 'url')`` -> ``sites[3].checks[0].url``."""
    parts: list[str] = []
    for segment in path:
        if isinstance(segment, int) and not isinstance(segment, bool):
            parts.append(f"[{segment}]")
        elif isinstance(segment, str) and _PLAIN_KEY_RE.fullmatch(segment):
            parts.append(f".{segment}" if parts else segment)
        else:
            parts.append(f"[{_one_line(repr(segment))}]")
    return "".join(parts)


def _show_key(key: Any) -> str:
    return f"'{key}'" if isinstance(key, str) else repr(key)


def describe_kind(value: Any) -> str:
    """How a config value is named in messages: 'a list', 'a mapping', 'null', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _shorten(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split("\n")).replace("\r", " ")
