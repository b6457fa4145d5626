#!/usr/bin/env python3
"""Counts the public items of crates from rustdoc HTML (cargo doc --workspace --no-deps).

The method described in handover/2026-12-05/api.md (whose script was not kept): the items
listed in each crate's all.html, plus the inherent methods and associated items of its
structs and enums, the methods of its traits, enum variants (not their fields) and pub
struct fields. doc(hidden) items are not in the HTML, so not counted; re-exports count in
each crate that re-exports them. Written again from that description (late-harness.md): on
the same tree it counts more than the lost script did, so compare counts of one script only.

Usage: count_pub.py target/doc framewire_codec framewire_server framewire_client
"""
import os, re, sys

SECTION_END = re.compile(r'<h2 id="(trait-implementations|synthetic-implementations|blanket-implementations|deref-methods[^"]*)"')

def inherent(html):
    i = html.find('id="implementations-list"')
    if i < 0:
        return 0
    m = SECTION_END.search(html, i)
    part = html[i:m.start() if m else len(html)]
    return len(set(re.findall(r'<section id="((?:method|associatedconstant|associatedtype)\.[^"]+)"', part)))

def count(doc, krate):
    root = os.path.join(doc, krate)
    alls = open(os.path.join(root, 'all.html'), encoding='utf-8').read()
    items = re.findall(r'<li><a href="([^"]+\.html)">', alls)
    methods = variants = fields = 0
    for href in set(items):
        path = os.path.join(root, href)
        if not os.path.exists(path):
            continue
        html = open(path, encoding='utf-8').read()
        base = os.path.basename(href)
        if base.startswith(('struct.', 'enum.', 'union.')):
            methods += inherent(html)
            variants += len(set(v for v in re.findall(r'id="variant\.([^"]+)"', html) if ".field." not in v))
            fields += len(set(re.findall(r'id="structfield\.([^"]+)"', html)))
        elif base.startswith('trait.'):
            methods += len(set(re.findall(r'<section id="((?:tymethod|method|associatedconstant|associatedtype)\.[^"]+)"', html.split('id="implementors"')[0])))
    n = len(items)
    return n, methods, variants, fields

doc = sys.argv[1]
total = 0
for krate in sys.argv[2:]:
    n, m, v, f = count(doc, krate)
    s = n + m + v + f
    total += s
    print(f"{krate}: {s} ({n} items, {m} methods, {v} variants, {f} fields)")
print(f"total: {total}")
