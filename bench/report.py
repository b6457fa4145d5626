#!/usr/bin/env python3
"""Tables of ratios and an SVG chart from loadgen CSV files. Python 3 standard library only.

    python3 bench/report.py table bench/results/compare.csv [--baseline tokio-util] [--physical raw]
                                  [--plain framewire] [--ack framewire-ack]
    python3 bench/report.py svg   bench/results/compare.csv bench/results/compare.svg [--title T]
    python3 bench/report.py memory bench/results/memory.csv
    (table and memory take --markdown for README tables)

Rows are loadgen CSV rows (`loadgen ... --csv FILE --label IMPL`); the label names the server
implementation, the `client` column the client implementation. Rows with a `window` (ack-mode
runs, `--client framewire-ack`) go to the "Ack mode vs plain mode" table only; CSV files written
before that column existed read as having no ack-mode rows.
"""

import argparse
import csv
import math
import sys

# Line colours for the chart, by implementation; unknown names get the spare colours in order.
COLOURS = {
    "raw": "#7f7f7f",
    "tokio-util": "#1f77b4",
    "codec": "#ff7f0e",
    "framewire": "#2ca02c",
}
SPARE_COLOURS = ["#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def load(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def aggregate(rows):
    """One row per cell (mode, label, client, size, conns, depth, window): the median of its
    rounds for the timed columns, plus `runs` and `spread` ((max - min) / median of frames/s)."""
    keys = ("mode", "label", "client", "frame_size", "conns", "depth", "window")
    cells = {}
    for r in rows:
        # Files from before the `window` column: no ack-mode rows.
        r["window"] = r.get("window") or ""
        cells.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for group in cells.values():
        row = dict(group[0])
        for r in group:
            cpu = (num(r, "client_cpu_s") or 0) + (num(r, "server_cpu_s") or 0)
            frames = num(r, "frames")
            r["frames_per_cpu_s"] = str(frames / cpu) if cpu > 0 and frames is not None else ""
        for col in ("frames_per_s", "mib_per_s", "p50_us", "p99_us", "p999_us", "frames_per_cpu_s"):
            vals = [num(r, col) for r in group if num(r, col) is not None]
            row[col] = str(median(vals)) if vals else ""
        fps = [num(r, "frames_per_s") for r in group if num(r, "frames_per_s") is not None]
        row["runs"] = str(len(group))
        mid = median(fps) if fps else 0
        row["spread"] = f"{(max(fps) - min(fps)) / mid * 100:.0f}%" if fps and mid else "-"
        out.append(row)
    return out


def num(row, key):
    value = row.get(key, "")
    return float(value) if value not in ("", None) else None


def size_label(n):
    n = int(n)
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def si(x):
    """3 significant digits with k/M/G suffix: 1234567 -> '1.23M'."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        # 999,700 rounds to 3 digits as 1.00M, not "1e+03k".
        if abs(x) >= div * 0.9995:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def ratio(x, ref):
    if x is None or not ref:
        return "-"
    return f"{x / ref:.2f}x"


def fine_ratio(x, ref):
    """As ratio, with two significant digits below 0.1x (stop-and-wait is far below plain)."""
    if x is None or not ref or x / ref >= 0.1:
        return ratio(x, ref)
    return f"{x / ref:.2g}x"


def order(labels, baseline, physical):
    """Physical limit first, then baseline, then the rest in first-seen order."""
    seen = []
    for label in labels:
        if label not in seen:
            seen.append(label)
    head = [x for x in (physical, baseline) if x in seen]
    return head + [x for x in seen if x not in head]


MARKDOWN = False


def render(rows):
    if MARKDOWN:
        lines = ["| " + " | ".join(str(c) for c in rows[0]) + " |",
                 "|" + "|".join("---" if i < 2 else "---:" for i in range(len(rows[0]))) + "|"]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows[1:]]
        # A Markdown table cannot follow its title line directly.
        return "\n" + "\n".join(lines)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = [str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def find(rows, **want):
    for r in rows:
        if all(r.get(k) == v for k, v in want.items()):
            return r
    return None


def cpu_cells(r, base, phys):
    """frames per CPU-second (client + server) and its ratios, or dashes without CPU figures."""
    eff = num(r, "frames_per_cpu_s")
    if eff is None:
        return ["-", "-", "-"]
    return [si(eff), ratio(eff, base and num(base, "frames_per_cpu_s")),
            ratio(eff, phys and num(phys, "frames_per_cpu_s"))]


def is_ack(row):
    return bool(row.get("window"))


def stream_table(rows, baseline, physical):
    stream = [r for r in rows if r["mode"] == "stream" and not is_ack(r)]
    if not stream:
        return ""
    out = [["size", "impl (both ends)", "frames/s", "MiB/s", f"x {baseline}", f"x {physical}",
            "runs", "spread", "frames/CPU-s", f"x {baseline}", f"x {physical}"]]
    sizes = sorted({int(r["frame_size"]) for r in stream})
    for size in sizes:
        at = [r for r in stream if int(r["frame_size"]) == size]
        base = find(at, label=baseline)
        phys = find(at, label=physical)
        for label in order([r["label"] for r in at], baseline, physical):
            r = find(at, label=label)
            fps = num(r, "frames_per_s")
            out.append([
                size_label(size), f"{label}", si(fps), f"{num(r, 'mib_per_s'):.0f}",
                ratio(fps, base and num(base, "frames_per_s")),
                ratio(fps, phys and num(phys, "frames_per_s")),
                r.get("runs", "1"), r.get("spread", "-"),
                *cpu_cells(r, base, phys),
            ])
    return ("One-way stream into a sink, one connection (frames/s, median of runs; spread = "
            "(max - min) / median of frames/s; frames/CPU-s = frames per CPU-second of client + "
            "server)\n") + render(out)


def pipeline_table(rows, baseline, physical):
    """One table per payload size of the pipelined echo."""
    pipe = [r for r in rows if r["mode"] == "pipeline" and not is_ack(r)]
    sizes = sorted({int(r["frame_size"]) for r in pipe})
    return "\n\n".join(
        pipeline_size_table([r for r in pipe if int(r["frame_size"]) == size], baseline, physical)
        for size in sizes
    )


def pipeline_size_table(pipe, baseline, physical):
    first = pipe[0]
    out = [["server", "client", "replies/s", "p50 us", "p99 us",
            f"x {baseline} server", f"x {physical} server", "runs", "spread",
            "frames/CPU-s", f"x {baseline}", f"x {physical}"]]
    for label in order([r["label"] for r in pipe], baseline, physical):
        for r in [r for r in pipe if r["label"] == label]:
            client = r["client"]
            # Same client against the baseline server; "both ends" rows compare with the
            # baseline at both ends.
            base = find(pipe, label=baseline, client=client if client == physical else baseline)
            phys = find(pipe, label=physical, client=physical)
            fps = num(r, "frames_per_s")
            out.append([
                label, client, si(fps), f"{num(r, 'p50_us'):.0f}", f"{num(r, 'p99_us'):.0f}",
                ratio(fps, base and num(base, "frames_per_s")),
                ratio(fps, phys and num(phys, "frames_per_s")),
                r.get("runs", "1"), r.get("spread", "-"),
                *cpu_cells(r, base, phys),
            ])
    title = (f"Pipelined echo, {first['conns']} connections x {first['depth']} in flight, "
             f"{size_label(first['frame_size'])} (replies/s; ratios against the same client's "
             f"run, or both ends {baseline})")
    return title + "\n" + render(out)


def ack_table(rows, plain, ack):
    """Ack mode (rows with a window) against plain mode (label and client `plain`, no window),
    one-way stream, per frame size."""
    stream = [r for r in rows if r["mode"] == "stream"]
    acked = [r for r in stream if is_ack(r)]
    if not acked:
        return ""
    out = [["size", "mode", "frames/s", "MiB/s", "x plain", "runs", "spread",
            "frames/CPU-s", "x plain"]]
    for size in sorted({int(r["frame_size"]) for r in acked}):
        at = [r for r in stream if int(r["frame_size"]) == size]
        base = find([r for r in at if not is_ack(r)], label=plain, client=plain)
        cells = ([("plain", base)] if base else []) + [
            (f"ack, window {r['window']}"
             + (f" ({r['label'][len(ack):].strip()})" if r["label"].startswith(ack + " ") else ""), r)
            for r in sorted((r for r in at if is_ack(r)),
                            key=lambda r: (int(r["window"]), r["label"]))
        ]
        for name, r in cells:
            fps = num(r, "frames_per_s")
            eff = num(r, "frames_per_cpu_s")
            out.append([
                size_label(size), name, si(fps), f"{num(r, 'mib_per_s'):.0f}",
                fine_ratio(fps, base and num(base, "frames_per_s")),
                r.get("runs", "1"), r.get("spread", "-"),
                si(eff) if eff is not None else "-",
                fine_ratio(eff, base and num(base, "frames_per_cpu_s")),
            ])
    labels = sorted({r["label"] for r in acked})
    return (f"Ack mode vs plain mode: one-way stream into a sink, one connection, {plain} client "
            f"and server in plain mode and in ack mode ({', '.join(labels)}: client and server "
            f"grant the same window); x plain = against plain mode in the same run "
            f"(\"-\" if it has no plain row); issue 12's targets at the default window (4096): at least 0.70x frames/s and 0.67x frames/CPU-s\n") + render(out)


def memory_table(rows):
    parts = []
    conns = [r for r in rows if r["mode"] == "conns"]
    if conns:
        out = [["server", "conns", "KiB RSS/conn idle", "KiB RSS/conn after echo",
                "KiB VmSize/conn", "echoed ok"]]
        for r in conns:
            out.append([r["label"], r["conns"], r["rss_per_conn_kib"], r["rss_echoed_per_conn_kib"],
                        r["vm_per_conn_kib"], f"{r['echo_ok']}/{r['conns']}"])
        parts.append("Idle connections: server memory growth per connection\n" + render(out))
    flood = [r for r in rows if r["mode"] == "flood"]
    if flood:
        out = [["server", "conns", "KiB VmSize/conn", "KiB RSS/conn", "still echoes"]]
        for r in flood:
            out.append([r["label"], r["conns"], r["vm_per_conn_kib"], r["rss_per_conn_kib"],
                        "yes" if r["echo_ok"] == "1" else "no"])
        parts.append("Header flood (each connection announces 8 MiB, sends nothing more): "
                     "server growth per connection\n" + render(out))
    return "\n\n".join(parts)


def svg_chart(rows, title, baseline, physical):
    """frames/s against payload size, both axes log scale, one line per implementation."""
    stream = [r for r in rows if r["mode"] == "stream" and num(r, "frames_per_s") and not is_ack(r)]
    if not stream:
        raise SystemExit("no stream rows to chart")
    series = {}
    for r in stream:
        series.setdefault(r["label"], []).append((int(r["frame_size"]), num(r, "frames_per_s")))
    width, height = 760, 470
    left, right, top, bottom = 80, 170, 50, 60
    pw, ph = width - left - right, height - top - bottom
    sizes = sorted({s for pts in series.values() for s, _ in pts})
    xs = [math.log2(s) for s in sizes]
    x_lo, x_hi = min(xs), max(xs)
    # Half an octave of room either side, so end points do not sit on the frame.
    x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    ys = [v for pts in series.values() for _, v in pts]
    y_lo = math.floor(math.log10(min(ys)))
    y_hi = math.ceil(math.log10(max(ys)))
    if y_hi == y_lo:
        y_hi += 1

    def px(size):
        return left + (math.log2(size) - x_lo) / (x_hi - x_lo) * pw

    def py(value):
        return top + ph - (math.log10(value) - y_lo) / (y_hi - y_lo) * ph

    def esc(s):
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2:.0f}" y="24" text-anchor="middle" font-size="14">{esc(title)}</text>',
    ]
    for decade in range(y_lo, y_hi + 1):
        y = py(10 ** decade)
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + pw}" y2="{y:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{si(10 ** decade)}</text>')
        if decade < y_hi:
            for m in range(2, 10):
                ym = py(m * 10 ** decade)
                out.append(f'<line x1="{left}" y1="{ym:.1f}" x2="{left + pw}" y2="{ym:.1f}" '
                           f'stroke="#f2f2f2"/>')
    for s in sizes:
        x = px(s)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">{size_label(s)}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{left + pw / 2:.0f}" y="{height - 16}" text-anchor="middle">'
               'payload size per frame (log scale)</text>')
    out.append(f'<text transform="translate(20 {top + ph / 2:.0f}) rotate(-90)" '
               'text-anchor="middle">frames/s (log scale)</text>')
    spare = iter(SPARE_COLOURS)
    for i, label in enumerate(order(list(series), baseline, physical)):
        colour = COLOURS.get(label) or next(spare, "#000")
        pts = sorted(series[label])
        path = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for s, v in pts:
            out.append(f'<circle cx="{px(s):.1f}" cy="{py(v):.1f}" r="3.5" fill="{colour}">'
                       f'<title>{esc(label)} {size_label(s)}: {si(v)} frames/s</title></circle>')
        ly = top + 14 + 20 * i
        out.append(f'<line x1="{left + pw + 16}" y1="{ly}" x2="{left + pw + 40}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{left + pw + 46}" y="{ly + 4}">{esc(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="print the tables of ratios")
    t.add_argument("csv")
    s = sub.add_parser("svg", help="write the chart")
    s.add_argument("csv")
    s.add_argument("out")
    s.add_argument("--title", default="One-way stream, one connection")
    m = sub.add_parser("memory", help="print the idle-connection and header-flood tables")
    m.add_argument("csv")
    for q in (t, s):
        q.add_argument("--baseline", default="tokio-util")
        q.add_argument("--physical", default="raw")
    t.add_argument("--plain", default="framewire", help="plain-mode implementation (label and client)")
    t.add_argument("--ack", default="framewire-ack", help="ack-mode implementation (not used for "
                   "selection: ack rows are the ones with a window)")
    for q in (t, m):
        q.add_argument("--markdown", action="store_true", help="Markdown tables")
    a = p.parse_args(argv)
    global MARKDOWN
    MARKDOWN = getattr(a, "markdown", False)
    rows = load(a.csv)
    if a.cmd in ("table", "svg"):
        rows = aggregate(rows)
    if a.cmd == "table":
        parts = [stream_table(rows, a.baseline, a.physical), pipeline_table(rows, a.baseline, a.physical),
                 ack_table(rows, a.plain, a.ack)]
        print("\n\n".join(x for x in parts if x))
    elif a.cmd == "svg":
        with open(a.out, "w") as f:
            f.write(svg_chart(rows, a.title, a.baseline, a.physical))
    else:
        print(memory_table(rows))


if __name__ == "__main__":
    main(sys.argv[1:])
