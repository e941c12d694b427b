"""Value types of the Rules language (wirefilter's ``Type``): String, Int, Bool, IP, Array<T>, Map<T>.

Runtime representation (what compiled closures pass around):

=========  =====================================================
String     ``str`` (wirefilter works on bytes; edge uses text, ``\\xHH`` escapes give ``chr(0xHH)``)
Int        ``int``
Bool       ``bool``
IP         ``ipaddress.IPv4Address | ipaddress.IPv6Address``
Array<T>   ``tuple`` of T
Map<T>     ``dict[str, T]``
missing    ``None`` (absent map key, index out of range); every comparison against it is false
=========  =====================================================
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Type:
    kind: str  # "String" | "Int" | "Bool" | "IP" | "Array" | "Map"
    elem: Type | None = None

    def __str__(self) -> str:
        return f"{self.kind}<{self.elem}>" if self.elem is not None else self.kind


STRING = Type("String")
INT = Type("Int")
BOOL = Type("Bool")
IP = Type("IP")


def array_of(elem: Type) -> Type:
    return Type("Array", elem)


def map_of(elem: Type) -> Type:
    return Type("Map", elem)
