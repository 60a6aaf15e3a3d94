#!/usr/bin/env python3
"""Prints the .tj kernels embedded as C string literals in the given test
files, one per file written to OUTDIR/<test>-<n>.tj (make_corpus.sh).

A kernel is a run of adjacent string literals (only whitespace, comments or
nothing between them) whose text contains "kernel ". Escapes are decoded
the C way for the common cases (\\n \\t \\" \\\\ \\xNN)."""
import os
import re
import sys

LIT = re.compile(r'"((?:[^"\\\n]|\\.)*)"')
GAP = re.compile(r'(?:\s|//[^\n]*\n|/\*.*?\*/)*', re.S)


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c != '\\':
            out.append(c)
            i += 1
            continue
        n = s[i + 1]
        if n == 'x':
            m = re.match(r'[0-9a-fA-F]{1,2}', s[i + 2:])
            out.append(chr(int(m.group(0), 16)))
            i += 2 + len(m.group(0))
            continue
        out.append({'n': '\n', 't': '\t', '"': '"', '\\': '\\', "'": "'", '0': '\0'}.get(n, n))
        i += 2
    return ''.join(out)


def kernels(text):
    pos = 0
    while True:
        m = LIT.search(text, pos)
        if not m:
            return
        parts, end = [m.group(1)], m.end()
        while True:
            g = GAP.match(text, end)
            m2 = LIT.match(text, g.end())
            if not m2:
                break
            parts.append(m2.group(1))
            end = m2.end()
        pos = end
        src = unescape(''.join(parts))
        if 'kernel ' in src and '{' in src:
            yield src


def main():
    outdir, files = sys.argv[1], sys.argv[2:]
    for f in files:
        base = os.path.splitext(os.path.basename(f))[0]
        seen = set()
        for n, src in enumerate(kernels(open(f, encoding='utf-8').read())):
            if src in seen:
                continue
            seen.add(src)
            with open(os.path.join(outdir, f'{base}-{n}.tj'), 'w', encoding='utf-8') as o:
                o.write(src)


main()
