"""How a config.json field is checked: the three words every section's reader is written in.

    expect(value, kind, where, what)   the value, if of the type the spec gives the field
    refuse(obj, where, fields, why)    a field pyrun knows and cannot honour, present: an error
    bad(where, why)                    the one-line error, naming the field ("config.json process.cwd")

What none of them is asked about, a field the spec added after pyrun was
written, is passed over: config.py has the spec's rule.
"""
import json

from runtime.errors import PyrunError


def bad(where: str, why: str) -> PyrunError:
    return PyrunError(f"config.json {where}", why)


def expect(value, kind, where: str, what: str):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(where or "the file", f"expected {what}, got {json.dumps(value)[:60]}")
    return value


def refuse(obj: dict, where: str, fields, why: str) -> None:
    for name in fields:
        if obj.get(name):
            raise bad(f"{where}.{name}", f"{why}; leave it out")
