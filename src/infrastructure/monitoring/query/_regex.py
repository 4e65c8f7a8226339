"""Regular expressions that mean the same to both query engines.

DuckDB matches with RE2 (``regexp_matches``); the Python engine and ``monitoring grep`` with
``re``. The two disagree on more than exotic syntax: ``\\d``, ``\\w``, ``\\s`` and ``\\b`` are
ASCII in RE2 and Unicode in ``re``; ``\\s`` in ``re`` also matches a vertical tab; ``$`` in
``re`` also matches before a final newline; ``{,3}`` is a repetition in ``re`` and the text
``{,3}`` in RE2; ``[[:alpha:]]`` is a class in RE2 and a nested set in ``re``; ignoring case,
``re`` also pairs ``i`` with the Turkish dotted and dotless i (U+0130, U+0131), which RE2
does not. So a pattern is read once here, against the subset both understand, and rewritten
for ``re`` with RE2's meaning; DuckDB gets it as written. Anything outside the subset is refused with a
``QueryError`` saying what to write instead, never run with two meanings.

The subset (docs/search.md): literal characters; ``.``; ``^``, ``$``, ``\\A``; ``|``; groups
``(...)``, ``(?:...)``, ``(?P<name>...)``; ``* + ?`` and ``{n}``, ``{n,}``, ``{n,m}`` (nested
counts multiplied at most 1000), each optionally lazy (``*?``); classes ``[...]``/``[^...]``
with ranges and ``\\d \\w \\s`` inside; ``\\d \\D \\w \\W \\s \\S \\b \\B`` (ASCII, as RE2);
``\\t \\n \\r \\f \\v \\a \\xHH``; ``\\`` before any ASCII punctuation; flags ``i``, ``m``,
``s`` at the very start (``(?i)``) or scoped (``(?i:...)``, ``(?-i:...)``).
"""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass, replace
from typing import Final

from ..errors import QueryError

__all__ = ["MAX_REPEAT", "compile_regex"]

MAX_REPEAT: Final = 1000
"""RE2 refuses counted repetitions whose counts, multiplied across nesting, exceed this."""
MAX_DEPTH: Final = 100

_WORD: Final = "0-9A-Za-z_"
_SPACE: Final = "\\t\\n\\f\\r "
_SHORTHAND: Final = {"d": "[0-9]", "D": "[^0-9]", "w": f"[{_WORD}]", "W": f"[^{_WORD}]",
                     "s": f"[{_SPACE}]", "S": f"[^{_SPACE}]"}
_IN_CLASS: Final = {"d": "0-9", "w": _WORD, "s": _SPACE}
_W: Final = f"(?-i:[{_WORD}])"
"""A word character whatever the case flag says, as RE2's ``\\b`` sees it."""
_BOUNDARY: Final = {"b": f"(?:(?<={_W})(?!{_W})|(?<!{_W})(?={_W}))",
                    "B": f"(?:(?<={_W})(?={_W})|(?<!{_W})(?!{_W}))"}
_CONTROL: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "v": "\v", "a": "\a"}
_PUNCTUATION: Final = frozenset(string.punctuation)
_FLAGS: Final = frozenset("ims")
_HEX: Final = frozenset(string.hexdigits)
_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_COUNT_RE: Final = re.compile(r"\{(\d+)(,(\d*))?\}")
_RE2_CASES: Final = {"i": "iI", "I": "iI", "\u0130": "\u0130", "\u0131": "\u0131", "\u0390": "\u0390",
                     "\u1fd3": "\u1fd3", "\u03b0": "\u03b0", "\u1fe3": "\u1fe3", "\ufb05": "\ufb05",
                     "\ufb06": "\ufb06"}
"""Ignoring case, ``re`` pairs each of these with more letters than RE2 does (``re._casefix``);
RE2's own matches are listed (found by comparing both engines on every Unicode letter)."""


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled for ``re`` so that it matches exactly the texts RE2 (DuckDB) matches;
    ``QueryError`` for a pattern outside the subset both engines read alike."""
    if not isinstance(pattern, str):
        raise QueryError(f"a regular expression must be text, got {pattern!r}")
    python = _Reader(pattern).translate()
    try:
        return re.compile(python)
    except (re.error, RecursionError, OverflowError) as exc:
        raise QueryError(f"not a regular expression: {pattern!r} ({exc})") from None


@dataclass(frozen=True, slots=True)
class _Flags:
    caseless: bool = False
    multiline: bool = False

    def apply(self, on: str, off: str = "") -> _Flags:
        caseless = ("i" in on or self.caseless) and "i" not in off
        multiline = ("m" in on or self.multiline) and "m" not in off
        return replace(self, caseless=caseless, multiline=multiline)


class _Reader:
    """A recursive-descent reader of the subset that writes the ``re`` equivalent as it goes."""

    def __init__(self, pattern: str) -> None:
        self.text = pattern
        self.i = 0
        self.out: list[str] = []

    def fail(self, why: str) -> QueryError:
        return QueryError(f"regular expression {self.text!r}: {why} (at position {self.i}); "
                          "see docs/search.md for what both query engines read alike")

    def peek(self, offset: int = 0) -> str:
        j = self.i + offset
        return self.text[j] if j < len(self.text) else ""

    def startswith(self, prefix: str) -> bool:
        return self.text.startswith(prefix, self.i)

    # ------------------------------------------------------------------ the grammar

    def translate(self) -> str:
        flags = _Flags()
        while (end := self._global_flags_end()) is not None:  # (?i)(?s) at the very start
            on = self.text[self.i + 2:end]
            flags = flags.apply(on)
            self.out.append(f"(?{on})")
            self.i = end + 1
        self.alternation(flags, depth=0)
        if self.i < len(self.text):
            raise self.fail("unbalanced ')'")
        return "".join(self.out)

    def _global_flags_end(self) -> int | None:
        """The index of the ')' closing a flag group ``(?ims)`` here, else ``None``."""
        if not self.startswith("(?"):
            return None
        j = self.i + 2
        while j < len(self.text) and self.text[j] in _FLAGS:
            j += 1
        return j if j > self.i + 2 and self.text[j:j + 1] == ")" else None

    def alternation(self, flags: _Flags, depth: int) -> int:
        """Read alternatives; returns the largest product of counted repetitions inside (RE2's limit)."""
        weight = self.sequence(flags, depth)
        while self.peek() == "|":
            self.out.append("|")
            self.i += 1
            weight = max(weight, self.sequence(flags, depth))
        return weight

    def sequence(self, flags: _Flags, depth: int) -> int:
        weight = 1
        while self.i < len(self.text) and self.peek() not in "|)":
            repeatable, inner = self.atom(flags, depth)
            weight = max(weight, self.quantifier(repeatable, inner))
        return weight

    def quantifier(self, repeatable: bool, weight: int) -> int:
        """Read the repetition after an atom, if any; returns the atom's weight with it."""
        ch = self.peek()
        count = _COUNT_RE.match(self.text, self.i) if ch == "{" else None
        if ch == "{" and count is None:
            if self.startswith("{,"):
                raise self.fail("'{,n}' repeats in Python but is plain text in DuckDB; write '{0,n}' "
                                "(or '\\{' for a brace)")
            return weight  # a brace that starts no count: plain text in both, written escaped by atom()
        if ch not in ("*", "+", "?") and count is None:
            return weight
        if not repeatable:
            raise self.fail(f"nothing to repeat before {ch!r}")
        if count is not None:
            low, high = int(count.group(1)), count.group(3)
            if high and int(high) < low:
                raise self.fail(f"repetition {count.group(0)} counts down")
            bound = int(high) if high else low
            if max(low, bound) > MAX_REPEAT or bound * weight > MAX_REPEAT:
                raise self.fail(f"repetition {count.group(0)}: DuckDB refuses counts above {MAX_REPEAT}, "
                                "multiplied across nested repetitions")
            weight *= max(bound, 1)
            self.out.append(count.group(0))
            self.i = count.end()
        else:
            self.out.append(ch)
            self.i += 1
        if self.peek() == "?":  # lazy
            self.out.append("?")
            self.i += 1
        if self.peek() in ("*", "+", "?") or _COUNT_RE.match(self.text, self.i):
            raise self.fail("a repetition of a repetition (possessive or doubled) is not supported; "
                            "use a group: (?:a*)*")
        return weight

    def atom(self, flags: _Flags, depth: int) -> tuple[bool, int]:
        """Read one atom: whether a repetition may follow it, and its weight."""
        ch = self.peek()
        if ch == "(":
            return True, self.group(flags, depth)
        if ch == "[":
            self.char_class(flags)
            return True, 1
        if ch in "*+?" or (ch == "{" and _COUNT_RE.match(self.text, self.i)):
            raise self.fail(f"nothing to repeat before {ch!r}")
        self.i += 1
        if ch == ".":
            self.out.append(".")
        elif ch == "^":
            self.out.append("^")
            return False, 1
        elif ch == "$":
            self.out.append("$" if flags.multiline else "\\Z")  # without (?m) RE2's $ is the text's end only
            return False, 1
        elif ch == "\\":
            return self.escape(flags), 1
        else:
            self.out.append(_literal(ch, flags))  # '{', '}', ']' too: plain text in both
        return True, 1

    def group(self, flags: _Flags, depth: int) -> int:
        if depth >= MAX_DEPTH:
            raise self.fail(f"groups nested more than {MAX_DEPTH} deep")
        self.i += 1
        if self.startswith("?"):
            flags = self.group_head(flags)
        else:
            self.out.append("(")
        weight = self.alternation(flags, depth + 1)
        if self.peek() != ")":
            raise self.fail("missing ')'")
        self.out.append(")")
        self.i += 1
        return weight

    def group_head(self, flags: _Flags) -> _Flags:
        """After '(?': a non-capturing, named or flag-scoped group; returns the flags inside it."""
        if self.startswith("?:"):
            self.out.append("(?:")
            self.i += 2
            return flags
        if self.startswith("?P<"):
            name = _NAME_RE.match(self.text, self.i + 3)
            if name is None or self.text[name.end():name.end() + 1] != ">":
                raise self.fail("a group name is a letter or '_' then letters, digits or '_': (?P<name>...)")
            self.out.append(f"(?P<{name.group(0)}>")
            self.i = name.end() + 1
            return flags
        j = self.i + 1
        on = off = ""
        while j < len(self.text) and self.text[j] in _FLAGS:
            on += self.text[j]
            j += 1
        if self.text[j:j + 1] == "-":
            j += 1
            while j < len(self.text) and self.text[j] in _FLAGS:
                off += self.text[j]
                j += 1
        if (on or off) and self.text[j:j + 1] == ":" and not set(on) & set(off):
            self.out.append("(?" + on + ("-" + off if off else "") + ":")
            self.i = j + 1
            return flags.apply(on, off)
        if on and not off and self.text[j:j + 1] == ")":
            raise self.fail(f"the flags (?{on}) apply to the whole pattern only at its very start; "
                            f"scope them instead: (?{on}:...)")
        what = {"?=": "lookahead", "?!": "lookahead", "?<=": "lookbehind", "?<!": "lookbehind",
                "?P=": "backreference", "?#": "comment", "?>": "atomic group", "?(": "conditional",
                "?<": "named group (write (?P<name>...))"}
        for head, construct in what.items():
            if self.startswith(head):
                raise self.fail(f"{construct} '({head}' is not supported (RE2, which DuckDB runs, has none)")
        raise self.fail("unknown group '(?'; use (?:...), (?P<name>...) or the flags i, m, s")

    def escape(self, flags: _Flags) -> bool:
        """After a backslash outside a class; ``True`` when a repetition may follow."""
        ch = self.peek()
        if not ch:
            raise self.fail("a pattern cannot end with a lone backslash")
        self.i += 1
        if ch in _SHORTHAND:
            self.out.append(_caseless_class(_SHORTHAND[ch]) if flags.caseless else _SHORTHAND[ch])
            return True
        if ch in _BOUNDARY:
            self.out.append(_BOUNDARY[ch])
            return False
        if ch == "A":
            self.out.append("\\A")
            return False
        self.out.append(_literal(self.escaped_literal(ch), flags))
        return True

    def escaped_literal(self, ch: str) -> str:
        """The character ``\\<ch>`` stands for (a control character, ``\\xHH`` or punctuation)."""
        if ch in _CONTROL:
            return _CONTROL[ch]
        if ch == "x":
            digits = self.text[self.i:self.i + 2]
            if len(digits) != 2 or not set(digits) <= _HEX:
                raise self.fail("write a character code as exactly two hex digits, \\xHH")
            self.i += 2
            return chr(int(digits, 16))
        if ch in _PUNCTUATION:
            return ch
        if ch.isdigit():
            raise self.fail(f"'\\{ch}': backreferences and octal escapes are not supported (use \\xHH)")
        hints = {"z": "use $ for the end", "Z": "use $ for the end", "p": "use a class such as [A-Za-z]",
                 "P": "use a negated class such as [^A-Za-z]", "u": "use the character itself or \\xHH",
                 "U": "use the character itself", "N": "use the character itself", "Q": "escape each character",
                 "E": "escape each character", "C": "use .", "G": "anchor with ^", "e": "use \\x1b"}
        hint = hints.get(ch, "escape only punctuation")
        raise self.fail(f"'\\{ch}' is not understood alike by both engines ({hint})")

    def char_class(self, flags: _Flags) -> None:
        self.i += 1
        out = ["["]
        if self.peek() == "^":
            out.append("^")
            self.i += 1
        first = True
        while True:
            ch = self.peek()
            if not ch:
                raise self.fail("missing ']'")
            if ch == "]" and not first:
                self.i += 1
                break
            first = False
            if ch == "[" and self.peek(1) in (":", "=", "."):
                raise self.fail(f"POSIX classes such as '[{self.peek(1)}alpha{self.peek(1)}]' are not read alike "
                                "by both engines; list the characters: [A-Za-z]")
            if ch == "\\" and self.peek(1) in _IN_CLASS:
                out.append(_IN_CLASS[self.peek(1)])
                self.i += 2
                continue
            if ch == "\\" and self.peek(1) in ("D", "W", "S", "B", "A"):
                raise self.fail(f"'\\{self.peek(1)}' inside [...] is not read alike by both engines; "
                                "write the characters out")
            low = self.class_char()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                self.i += 1
                if self.peek() == "\\" and self.peek(1) in ("d", "w", "s", "D", "W", "S"):
                    raise self.fail("a range cannot end with a class shorthand such as \\d")
                high = self.class_char()
                if ord(high) < ord(low):
                    raise self.fail(f"range {low!r}-{high!r} runs backwards")
                out.append(f"{re.escape(low)}-{re.escape(high)}")
            else:
                out.append(re.escape(low))
        out.append("]")
        body = "".join(out)
        self.out.append(_caseless_class(body) if flags.caseless else body)

    def class_char(self) -> str:
        ch = self.peek()
        self.i += 1
        if ch != "\\":
            return ch
        nxt = self.peek()
        if not nxt:
            raise self.fail("missing ']'")
        self.i += 1
        if nxt == "b":
            raise self.fail("'\\b' inside [...] is a backspace in Python and an error in DuckDB; write \\x08")
        return self.escaped_literal(nxt)


def _literal(ch: str, flags: _Flags) -> str:
    """One character as ``re`` text; ignoring case, a letter ``re`` pairs more widely than RE2 is
    written as exactly RE2's matches."""
    cases = _RE2_CASES.get(ch) if flags.caseless else None
    if cases is not None:
        return "(?-i:[" + cases + "])"
    return re.escape(ch)


def _caseless_class(body: str) -> str:
    """The class ``body`` ignoring case as RE2 does: the letters ``re`` pairs differently
    (``_RE2_CASES``) are taken out of, or added to, what ``re`` would match."""
    negated = body.startswith("[^")
    members = re.compile("[" + body[2:] if negated else body)
    loose = re.compile(body, re.IGNORECASE)
    drop = add = ""
    for ch, cases in _RE2_CASES.items():
        re2 = any(members.fullmatch(c) for c in cases) != negated  # RE2 folds the members, then negates
        python = loose.fullmatch(ch) is not None
        if python and not re2:
            drop += ch
        elif re2 and not python:
            add += ch
    if not drop and not add:
        return body
    kept = f"(?!(?-i:[{drop}])){body}" if drop else body
    return f"(?:{kept}|(?-i:[{add}]))" if add else f"(?:{kept})"
