"""How a config.json field is checked: the three words every section's reader is written in.

    expect(value, kind, where, what)   the value, if of the type the spec gives the field
    within(value, where, low, high, what)  a number, if in the range the spec's type or the kernel gives it
    refuse(obj, where, fields, why)    a field pyrun knows and cannot honour, present: an error
    bad(where, why)                    the one-line error, naming the field ("config.json process.cwd")

Every field is expected where it is read, as runc's JSON decoder types each
one: a value of another JSON type is the error naming the field, never a
Python exception further on, nor a truthy string ("false") taken for true.
A field left out or null is the spec's "unset": expect(..., default=X)
gives X for it, where the field is optional.

What none of them is asked about, a field the spec added after pyrun was
written, is passed over: config.py has the spec's rule.
"""
import json

from runtime.errors import PyrunError

_REQUIRED = object()


def bad(where: str, why: str) -> PyrunError:
    # The field's name may hold a config's own key (linux.sysctl.KEY): escaped, the error stays one line.
    where, why = (text if text.isprintable() else json.dumps(text)[1:-1] for text in (where, why))
    return PyrunError(f"config.json {where}", why)


def expect(value, kind, where: str, what: str, default=_REQUIRED):
    """VALUE if it is a KIND (a bool is not an int, as JSON's true is not a number); DEFAULT if it is None
    (left out or null) and the field has one."""
    if value is None and default is not _REQUIRED:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(where or "the file", f"expected {what}, got {json.dumps(value)[:60]}")
    return value


def within(value, where: str, low: int, high: int, what: str, default=_REQUIRED):
    """VALUE if it is a whole number from LOW to HIGH; WHAT says so ("a uid from 0 to 4294967294"). A number the
    kernel would refuse later, or read as something else, is this one line now."""
    number = expect(value, int, where, what, default)
    if value is not None and not low <= number <= high:
        raise bad(where, f"{number}: expected {what}")
    return number


def refuse(obj: dict, where: str, fields, why: str) -> None:
    for name in fields:
        if obj.get(name):
            raise bad(f"{where}.{name}", f"{why}; leave it out")
