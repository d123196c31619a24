"""PII scrubbing for free text and JSON-like values: e-mail addresses, card numbers, SSNs and phone numbers.

Everything a component sends in free-form fields (``meta``, error messages) may carry personal data. The
scrubber replaces what it recognises with a placeholder such as ``[redacted:email]`` and reports how many
of each kind it replaced, so callers can count redactions without keeping what was redacted.

It favours precision on the numbers an ops loop is full of: ISO dates, times, versions, decimals, UUIDs,
hex ids, order ids and epoch timestamps are left alone. The passes run in a fixed order (e-mail, card,
SSN, phone) so that a card number is never counted as a phone number. Placeholders hold no digit and no
``@``, and the passes repeat until they find nothing (a placeholder can free a number that was glued to
the one it replaced), so scrubbing scrubbed text changes nothing.

In JSON-like values, dict keys are scrubbed like strings (``{"jane@example.com": 1}`` is personal data
too), and a scrubbed key is still a name Firestore stores (see :func:`scrub_value`).

Standard library only (domain layer).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

KINDS: Final = ("email", "card", "ssn", "phone")


def placeholder(kind: str) -> str:
    """The text that stands in for one redacted item of ``kind``."""
    return f"[redacted:{kind}]"


# A number glued to a longer token (``v1.0.2``, ``ORD-2026-...``, ``a716-4466...``, ``x+1``) is not a
# candidate: the match may not start right after a word character, '.', '+', '/' or '-', nor end right
# before a word character or a '.', ':', '/', '-' that continues the token.
_NOT_AFTER = r"(?<![\w.+/-])"
_NOT_BEFORE = r"(?!\w|[.:/-]\w)"

_EMAIL = re.compile(
    r"(?<![\w.%+-])"
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![\w-]|\.[A-Za-z0-9])"
)

# Runs of digit groups separated by one space or dash; which part of a run is a card is decided in Python.
_CARD_RUN = re.compile(_NOT_AFTER + r"(?>[0-9]+(?:[ -][0-9]+)*)" + _NOT_BEFORE)
# First digit (ISO/IEC 7812 major industry identifier) of the cards we redact: 2-6 covers Mastercard,
# Amex, Diners, JCB, Visa, Maestro, Discover and UnionPay, and keeps epoch-millisecond timestamps and
# snowflake ids (leading 1) from being taken for cards one time in ten when their Luhn digit happens to fit.
_CARD_FIRST_DIGITS: Final = frozenset("23456")

_SSN = re.compile(_NOT_AFTER + r"([0-9]{3})-([0-9]{2})-([0-9]{4})" + _NOT_BEFORE)

# +CC, then an optional (area code), then digit groups separated by one space, dash or dot.
_PHONE_RUN = re.compile(
    _NOT_AFTER
    + r"(?>"
    r"(?:\+[0-9]{1,3}(?:[ .-]|(?=\())?)?"
    r"(?:\([0-9]{1,5}\)[ .-]?)?"
    r"[0-9]+(?:[ .-][0-9]+)*"
    r")"
    + _NOT_BEFORE
)
_NANP = re.compile(r"(?:1[ .-])?[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}|[0-9]{3}[ -][0-9]{4}")  # 555-123-4567, 555-1234
_DATE = re.compile(r"[0-9]{4}([./-])[0-9]{1,2}\1[0-9]{1,2}|[0-9]{1,2}([./-])[0-9]{1,2}\2[0-9]{4}")
_SSN_SHAPE = re.compile(r"[0-9]{3}-[0-9]{2}-[0-9]{4}")
_DIGIT_GROUP = re.compile(r"[0-9]+")
PHONE_DIGITS: Final = (7, 15)
CARD_DIGITS: Final = (13, 19)
MAX_GROUPS: Final = 8  # no card or phone is printed in more groups; bounds the work on long runs of numbers


def luhn_ok(digits: str) -> bool:
    """Whether a string of ASCII digits passes the Luhn (mod 10) checksum of payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _groups(text: str) -> tuple[list[str], list[str]]:
    """The digit groups of ``text`` and the separator before each (``""`` before the first)."""
    groups: list[str] = []
    seps: list[str] = []
    end = 0
    for m in _DIGIT_GROUP.finditer(text):
        seps.append(text[end:m.start()])
        groups.append(m.group())
        end = m.end()
    return groups, seps


def _card_layout(text: str) -> bool:
    """Whether a run of digit groups is laid out like a card number (13-19 digits), whatever its checksum."""
    groups, seps = _groups(text)
    if not CARD_DIGITS[0] <= sum(map(len, groups)) <= CARD_DIGITS[1] or seps[0]:  # no +CC, no (area)
        return False
    # one block, or the printed layouts 4-4-4-4, 4-6-5 (Amex), 4-6-4 (Diners), 4-4-4-4-3
    return len(groups) == 1 or (
        len(groups[0]) == 4 and len(set(seps[1:])) == 1 and seps[1] in (" ", "-")
        and all(3 <= len(g) <= 6 for g in groups[1:])
    )


def _is_card(text: str) -> bool:
    """Whether a run of digit groups (space or dash separated) is a payment card number."""
    digits = "".join(_DIGIT_GROUP.findall(text))
    return _card_layout(text) and digits[0] in _CARD_FIRST_DIGITS and luhn_ok(digits)


def _is_phone(text: str) -> bool:
    """Whether a candidate (``+CC``, ``(area)``, grouped digits) is a phone number and not some other number.

    International numbers (leading ``+``) and numbers with a parenthesised area code only need 7-15
    digits. National numbers need a telltale layout: North American (555-123-4567, 1 555 123 4567,
    555.123.4567, 555-1234) or a trunk prefix 0 (020 7946 0958, 06 12 34 56 78, 0151-12345678) with at
    least 9 digits. Dates, SSN-shaped numbers, decimals (one dot) and bare digit strings never qualify.
    """
    groups, seps = _groups(text)
    digits = "".join(groups)
    if not PHONE_DIGITS[0] <= len(digits) <= PHONE_DIGITS[1]:
        return False
    if text.startswith("+") or "(" in text:
        return True
    if _DATE.fullmatch(text) or _SSN_SHAPE.fullmatch(text) or len(groups) < 2:
        return False
    if _NANP.fullmatch(text):
        return True
    if "." in seps and len(groups) < 3:  # 0.0234567 is a decimal
        return False
    return (
        groups[0].startswith("0")
        and not groups[0].startswith("00")  # a trunk prefix is one 0; 00 dials abroad
        and 2 <= len(groups[0]) <= 5
        and len(digits) >= 9
        and len(set(seps[1:])) == 1
        and all(2 <= len(g) <= 8 for g in groups[1:])
    )


def _redact_in_run(
    run: str,
    kind: str,
    is_kind: Callable[[str], bool],
    digit_range: tuple[int, int],
    counts: Counter[str],
    keep: tuple[Callable[[str], bool], tuple[int, int]] | None = None,
) -> str:
    """Redact the parts of a run of digit groups that are ``kind``, leftmost-longest.

    A run may hold several numbers joined by single spaces ("555-123-4567 555-987-6543", "qty 2
    4111 1111 1111 1111"), so a part may start and end only where a space separates two groups; the
    first part also keeps whatever precedes its first digit (``+44``, ``(020)``). Parts that ``keep``
    (a predicate and the digit counts it may accept) takes are looked for first at each start, and are
    left as they are.
    """
    spans = [m.span() for m in _DIGIT_GROUP.finditer(run)]
    n = len(spans)
    before = [0]  # before[j]: digits in the groups ahead of group j
    for a, b in spans:
        before.append(before[-1] + b - a)
    fewest, most = digit_range

    def splits_before(j: int) -> bool:
        return run[spans[j - 1][1]:spans[j][0]] == " "

    def longest_from(i: int, accept: Callable[[str], bool], lo: int, hi: int) -> int:
        """The end group (exclusive) of the longest part from group ``i`` that ``accept`` takes, or 0."""
        start = 0 if i == 0 else spans[i][0]
        for k in range(min(n, i + MAX_GROUPS), i, -1):
            digits = before[k] - before[i]
            if digits < lo:
                return 0
            if digits > hi or (k < n and not splits_before(k)):
                continue
            if accept(run[start:len(run) if k == n else spans[k - 1][1]]):
                return k
        return 0

    out: list[str] = []
    done = 0  # run[:done] is already in out
    i = 0
    while i < n:
        if i > 0 and not splits_before(i):
            i += 1
            continue
        kept = longest_from(i, keep[0], *keep[1]) if keep is not None else 0
        if kept:
            i = kept
            continue
        k = longest_from(i, is_kind, fewest, most)
        if k == 0:
            i += 1
            continue
        start = 0 if i == 0 else spans[i][0]
        out += [run[done:start], placeholder(kind)]
        counts[kind] += 1
        done = len(run) if k == n else spans[k - 1][1]
        i = k
    out.append(run[done:])
    return "".join(out)


def _valid_ssn(m: re.Match[str]) -> bool:
    area, group, serial = m.groups()
    return area != "000" and area != "666" and not area.startswith("9") and group != "00" and serial != "0000"


def _scrub(text: str, counts: Counter[str]) -> str:
    """Scrub ``text`` until nothing more is found.

    A number glued to another (``555-123-4567+4915112345678``) is not a candidate, but once its neighbour
    is a placeholder it stands alone and is; another round finds it. Every round that changes the text
    replaces digits or '@' by placeholders that hold neither, so the rounds end (usually after one).
    """
    while True:
        scrubbed = _scrub_once(text, counts)
        if scrubbed == text:
            return text
        text = scrubbed


def _scrub_once(text: str, counts: Counter[str]) -> str:
    def email(m: re.Match[str]) -> str:
        counts["email"] += 1
        return placeholder("email")

    def ssn(m: re.Match[str]) -> str:
        if not _valid_ssn(m):
            return m.group()
        counts["ssn"] += 1
        return placeholder("ssn")

    if "@" in text:
        text = _EMAIL.sub(email, text)
    if not any(ch in "0123456789" for ch in text):
        return text
    text = _CARD_RUN.sub(lambda m: _redact_in_run(m.group(), "card", _is_card, CARD_DIGITS, counts), text)
    text = _SSN.sub(ssn, text)
    # what is laid out like a card but is not one (bad checksum) is a number, not a phone
    keep = (_card_layout, CARD_DIGITS)
    return _PHONE_RUN.sub(lambda m: _redact_in_run(m.group(), "phone", _is_phone, PHONE_DIGITS, counts, keep), text)


def _as_dict(counts: Counter[str]) -> dict[str, int]:
    return {kind: counts[kind] for kind in KINDS if counts[kind] > 0}


def scrub_text(text: str) -> tuple[str, dict[str, int]]:
    """Redact e-mail addresses, card numbers, SSNs and phone numbers in ``text``.

    Returns the scrubbed text and how many items of each kind were replaced (kinds with none are left out).
    """
    counts: Counter[str] = Counter()
    return _scrub(text, counts), _as_dict(counts)


# Firestore refuses field names that are empty, match __.*__ or take more than 1,500 bytes of UTF-8.
MAX_KEY_BYTES: Final = 1500
_RESERVED_KEY = re.compile(r"__.*__", re.DOTALL)
_DIGIT_OR_AT = re.compile(r"[0-9@]")


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` bytes of UTF-8, without the digits and '@' of what is left.

    Cutting takes away the context a detector looked at (a number's tail, the word after it), so a part
    that was rightly left alone could read as PII on its own; without digits and '@' nothing can.
    """
    return _DIGIT_OR_AT.sub("", text.encode("utf-8", "surrogatepass")[:limit].decode("utf-8", "ignore"))


def _storable_key(key: str, limit: int = MAX_KEY_BYTES) -> str:
    """A scrubbed key made a Firestore field name of at most ``limit`` bytes (only pathological keys change).

    Placeholders are longer than the shortest e-mail, so scrubbing can push a key past the limit; such a
    key is cut. A cut can end inside a run of underscores, so a name that Firestore reserves gets a
    leading ``~``.
    """
    if len(key.encode("utf-8", "surrogatepass")) > limit:
        key = _cut(key, limit - 1)  # room for the "~"
    if not key or _RESERVED_KEY.fullmatch(key):
        key = "~" + key
    return key


def _free_name(key: str, taken: set[Any]) -> str:
    """``key``, or ``key~2``, ``key~3``, ... : the first not in ``taken``, within Firestore's limit."""
    if key not in taken:
        return key
    n = 2
    while True:
        suffix = f"~{n}"
        name = _storable_key(key, MAX_KEY_BYTES - len(suffix)) + suffix
        if name not in taken:
            return name
        n += 1


def _walk_dict(value: dict[Any, Any], counts: Counter[str]) -> dict[Any, Any]:
    keys = [_storable_key(_scrub(key, counts)) if isinstance(key, str) else key for key in value]
    # keys that scrubbing left alone keep their names; a scrubbed one that meets a name already taken
    # (another scrubbed key, or a key sent as is) takes the first free "~n" in input order
    taken: set[Any] = {new for new, old in zip(keys, value, strict=True) if new == old}
    out: dict[Any, Any] = {}
    for new, (old, item) in zip(keys, value.items(), strict=True):
        if new != old:
            new = _free_name(new, taken)
            taken.add(new)
        out[new] = _walk(item, counts)
    return out


def _walk(value: Any, counts: Counter[str]) -> Any:
    if isinstance(value, str):
        return _scrub(value, counts)
    if isinstance(value, dict):
        return _walk_dict(value, counts)
    if isinstance(value, list):
        return [_walk(item, counts) for item in value]
    if isinstance(value, tuple):
        return tuple(_walk(item, counts) for item in value)
    return value


def scrub_value(value: Any) -> tuple[Any, dict[str, int]]:
    """Scrub every string inside a JSON-like value (dicts, lists, tuples, scalars), for ``meta`` and the like.

    Dict keys are strings too: they are scrubbed and counted like values. When scrubbed keys of one dict
    meet (``{"jane@x.io": 1, "john@x.io": 2}``), or one meets a key that scrubbing left alone, every
    value is kept: keys left alone keep their names, and each scrubbed key takes the first free name of
    ``key``, ``key~2``, ``key~3``, ... in input order (``{"[redacted:email]": 1, "[redacted:email]~2": 2}``).
    A key scrubbing changes stays a valid Firestore field name: non-empty, not ``__.*__``, at most
    ``MAX_KEY_BYTES`` of UTF-8 (a key the placeholders made longer is cut, and loses the digits and '@'
    of what is left so the cut cannot expose anything). Non-string keys, numbers, booleans and None pass
    through untouched. Returns a new value (the input is not modified) and the counts summed over all
    keys and strings; scrubbing the result again changes nothing.
    """
    counts: Counter[str] = Counter()
    return _walk(value, counts), _as_dict(counts)
