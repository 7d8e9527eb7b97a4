"""A small YAML writer for the subset the generated files use (stdlib only, no PyYAML).

Mappings and sequences in block style, strings plain when unambiguous, else single-quoted
when they hold a double quote, else double-quoted, multi-line strings as `|` block scalars. `tests/monitoring/yaml.rs` reads the same
subset back.
"""

import json
import re

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./:-]*$")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    if (_PLAIN.match(text) and text.lower() not in _RESERVED) or _DURATION.match(text):
        return text
    if '"' in text and "'" not in text and text.isprintable():
        return "'" + text + "'"
    return json.dumps(text, ensure_ascii=False)


def _lines(value, indent):
    pad = " " * indent
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_entry(pad + scalar(key) + ":", item, indent))
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)) and item:
                inner = _lines(item, indent + 2)
                out.append(pad + "- " + inner[0][indent + 2:])
                out.extend(inner[1:])
            else:
                out.extend(_entry(pad + "-", item, indent))
    else:
        raise TypeError(f"top level must be a mapping or a sequence, not {value!r}")
    return out


def _entry(head, item, indent):
    if isinstance(item, dict):
        return [head + " {}"] if not item else [head] + _lines(item, indent + 2)
    if isinstance(item, list):
        return [head + " []"] if not item else [head] + _lines(item, indent + 2)
    if isinstance(item, str) and "\n" in item:
        body = item if item.endswith("\n") else item + "\n"
        return [head + " |"] + [(" " * (indent + 2) + line) if line else "" for line in body.splitlines()]
    return [head + " " + scalar(item)]


def dump(value, header=""):
    """Render `value` (a dict or list) as YAML text, after an optional comment header."""
    return header + "\n".join(_lines(value, 0)) + "\n"
