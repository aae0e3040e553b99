"""Raw 16-bit registers ⇄ values, for template registers (pure functions).

Word order is the order of 16-bit words in a 32/64-bit value; bytes inside a
word are always big-endian, as Modbus requires. "Not available" sentinels
(and float NaN) decode to ``None``.
"""

from __future__ import annotations

import math
import struct

from devices.templates.schema import WORDS

_FORMATS = {"u16": ">H", "s16": ">h", "u32": ">I", "s32": ">i", "u64": ">Q", "s64": ">q",
            "f32": ">f"}

#: Raw values vendors use for "not available", per type (as unsigned register content).
DEFAULT_NAN: dict[str, tuple[int, ...]] = {
    "u16": (0xFFFF,),
    "s16": (0x8000,),
    "u32": (0xFFFFFFFF,),
    "s32": (0x80000000,),
    "u64": (0xFFFFFFFFFFFFFFFF,),
    "s64": (0x8000000000000000,),
    "f32": (),
}


def _ordered(words: list[int], word_order: str) -> list[int]:
    return list(reversed(words)) if word_order == "little" else list(words)


def raw_unsigned(words: list[int], word_order: str) -> int:
    """The registers as one unsigned integer, most significant word first after ordering."""
    value = 0
    for word in _ordered(words, word_order):
        value = (value << 16) | (word & 0xFFFF)
    return value


def decode_number(
    words: list[int], type_: str, word_order: str, nan: tuple[int, ...] | None = None
) -> float | None:
    """One numeric value from its registers; ``None`` for a sentinel or NaN."""
    raw = raw_unsigned(words, word_order)
    if raw in (DEFAULT_NAN[type_] if nan is None else nan):
        return None
    data = raw.to_bytes(2 * WORDS[type_], "big")
    value = struct.unpack(_FORMATS[type_], data)[0]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return float(value)


def decode_string(words: list[int]) -> str | None:
    """ASCII text from registers, trailing NULs and spaces removed."""
    data = b"".join(w.to_bytes(2, "big") for w in words)
    text = data.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
    return text or None


def encode_number(value: float | None, type_: str, word_order: str) -> list[int]:
    """Registers for ``value`` (rounded for integer types); ``None`` writes the sentinel."""
    size = WORDS[type_]
    if value is None:
        if type_ == "f32":
            data = struct.pack(">f", math.nan)
        else:
            data = DEFAULT_NAN[type_][0].to_bytes(2 * size, "big")
    else:
        number = value if type_ == "f32" else round(value)
        data = struct.pack(_FORMATS[type_], number)
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, 2 * size, 2)]
    return _ordered(words, word_order)


def encode_string(text: str, words: int) -> list[int]:
    """ASCII text padded with NULs to ``words`` registers."""
    data = text.encode("ascii", errors="replace")[: 2 * words].ljust(2 * words, b"\x00")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
