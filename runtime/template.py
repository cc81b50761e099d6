"""--format: the part of Go's text/template that people type at `docker inspect -f` and `docker ps --format`.

    {{.State.Status}}               a field, followed through nested records
    {{.NetworkSettings.IPAddress}}
    {{json .Config}}                the value as compact JSON
    {{.}}  {{json .}}               the whole record
    table {{.ID}}\t{{.Names}}       (ps) a header row, then one row per container, in aligned columns

Values print as Go prints them: strings bare, true/false, lists as [a b], maps as map[k:v]; a missing
field is "<no value>". `\t` and `\n` in the format are a tab and a newline, as docker's CLI makes them.
Anything else between braces (range, if, other functions) is refused with the text it could not read,
so a script never gets a silent wrong answer.
"""
import json
import re

from runtime.errors import PyrunError

_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
_FIELD = re.compile(r"\.|(\.[A-Za-z_][A-Za-z0-9_]*)+")


def parse(text: str, option: str = "--format") -> list:
    """TEXT as a list of literal strings and (function, field path) actions; raises PyrunError."""
    text = text.replace("\\t", "\t").replace("\\n", "\n")
    parts, at = [], 0
    for m in _ACTION.finditer(text):
        parts.append(text[at:m.start()])
        words = m[1].split()
        function = words.pop(0) if len(words) == 2 and words[0] == "json" else None
        if len(words) != 1 or not _FIELD.fullmatch(words[0]):
            raise PyrunError(f"invalid {option}", f"{m[0]!r}: pyrun's templates take {{{{.Field.Path}}}} or "
                                                  "{{json .Field}} (no range, if or other functions)")
        parts.append((function, [p for p in words[0].split(".") if p]))
        at = m.end()
    parts.append(text[at:])
    if "{{" in "".join(p for p in parts if isinstance(p, str)):
        raise PyrunError(f"invalid {option}", f"{text!r}: an unclosed {{{{")
    return parts


def render(parts: list, value) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        function, path = part
        found = value
        for name in path:
            found = found.get(name, _MISSING) if isinstance(found, dict) else _MISSING
        if function == "json":
            out.append("null" if found is _MISSING else json.dumps(found, separators=(",", ":")))
        else:
            out.append(_go(found))
    return "".join(out)


class _Missing:
    pass


_MISSING = _Missing()


def _go(value) -> str:
    """VALUE as Go's fmt prints it with %v."""
    if value is _MISSING:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[" + " ".join(map(_go, value)) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def table(parts: list, rows: list[dict], headers: dict[str, str]) -> list[str]:
    """`table FORMAT`: a header row (HEADERS: field -> title, else the field's name in capitals), then
    ROWS; tab-separated columns are aligned with three spaces between them, as docker's tabwriter does."""
    fields = {p[1][0] for p in parts if not isinstance(p, str) and p[1]}
    lines = [render(parts, {f: headers.get(f, f.upper()) for f in fields})] + [render(parts, r) for r in rows]
    cells = [line.split("\t") for line in lines]
    widths = [max(len(c[i]) for c in cells if i < len(c)) for i in range(max(map(len, cells)))]
    return ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(c)).rstrip() for c in cells]
