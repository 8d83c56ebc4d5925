#!/usr/bin/env python3
"""Prints the broker's module graph — which part imports which through `crate::` — and fails when
the parts import each other in a loop. Run by scripts/test.sh; ARCHITECTURE.md draws the result.

A part is a top-level module of broker/src, except that the data the node state holds
(`fanout::channels`, `fanout::history`, `fanout::write_through`) and the integration tasks that use the node state
(`integration::dispatch`, `integration::disconnect`) are parts of their own. Imports inside one
part (a module and its children) are not counted; unit tests (`mod tests`) may reach anywhere.

Usage: scripts/module-graph.py [--dot]
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "broker" / "src"
SPLIT = {"fanout::channels", "fanout::history", "fanout::write_through", "integration::dispatch", "integration::disconnect"}


def part_of(path_parts: list[str]) -> str:
    if not path_parts:
        return "lib"
    if len(path_parts) >= 2 and "::".join(path_parts[:2]) in SPLIT:
        return "::".join(path_parts[:2])
    return path_parts[0]


def file_parts(path: pathlib.Path) -> list[str]:
    rel = path.relative_to(SRC).with_suffix("")
    parts = [p for p in rel.parts if p != "mod"]
    return [] if parts == ["lib"] else parts


def strip_tests(text: str) -> str:
    """The code that counts: no unit tests, no comments (doc links may point anywhere)."""
    cut = text.find("#[cfg(test)]\nmod tests")
    text = text if cut < 0 else text[:cut]
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))


def targets(text: str) -> set[str]:
    found = set()
    for m in re.finditer(r"crate::([a-z_]+)(?:::([a-z_]+))?(?:::\{([^}]*)\})?", text):
        top, sub, group = m.group(1), m.group(2), m.group(3)
        if top == "test_state":
            continue
        found.add(part_of([top] + ([sub] if sub else [])))
        for name in re.findall(r"(?:^|,)\s*([a-z_]+)", group or ""):
            found.add(part_of([top, name]))
    for m in re.finditer(r"use crate::\{([^}]*)\}", text):
        for name in re.findall(r"(?:^|,)\s*([a-z_]+)", m.group(1)):
            found.add(part_of([name]))
    return found


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one part (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    edges: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        src = part_of(file_parts(path))
        for t in targets(strip_tests(path.read_text())):
            if t != src and t != "lib":
                edges.setdefault(src, set()).add(t)
    if "--dot" in sys.argv:
        print("digraph broker {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
    else:
        for a in sorted(edges):
            print(f"{a:24} -> {', '.join(sorted(edges[a]))}")
    loops = cycles(edges)
    for loop in loops:
        print(f"IMPORT CYCLE between: {', '.join(loop)}", file=sys.stderr)
    if not loops:
        print("no import cycle", file=sys.stderr)
    return 1 if loops else 0


if __name__ == "__main__":
    sys.exit(main())
