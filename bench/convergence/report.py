#!/usr/bin/env python3
"""Summarises bench/convergence results: report.py CSV PNG > table.md

CSV rows: workers,run,op(create|delete),host,metric(dns|http-nodeport|http-nginx),ms.
Prints a Markdown table (p50 / p99 / max by nearest rank) and draws the CDFs into PNG."""
import csv
import math
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = {
    ("create", "dns"): "first right DNS answer",
    ("create", "http-nodeport"): "first HTTP GET to name:NodePort",
    ("create", "http-nginx"): "first HTTP GET through nginx",
    ("delete", "dns"): "first NXDOMAIN",
    ("delete", "http-nginx"): "first 404 from nginx",
}
HOSTS = {"h1": "h1 (g1, central broker)", "h2": "h2 (g2, regional broker bridged over TLS)"}


def pct(xs, p):
    xs = sorted(xs)
    return xs[max(0, math.ceil(p / 100 * len(xs)) - 1)]


def main():
    data = defaultdict(list)
    for w, _run, op, host, metric, ms in csv.reader(open(sys.argv[1])):
        data[(int(w), op, host, metric)].append(float(ms))
    print("| workers | change | host | measured | runs | p50 ms | p99 ms | max ms |")
    print("|---:|---|---|---|---:|---:|---:|---:|")
    for (w, op, host, what), xs in sorted(data.items()):
        label = LABELS[(op, what)]
        print(f"| {w} | {op} | {HOSTS.get(host, host)} | {label} | {len(xs)} | "
              f"{pct(xs, 50):.1f} | {pct(xs, 99):.1f} | {max(xs):.1f} |")
    ops = sorted({k[1] for k in data})
    fig, axes = plt.subplots(1, len(ops), figsize=(6 * len(ops), 4.2), sharey=True)
    if len(ops) == 1:
        axes = [axes]
    for ax, op in zip(axes, ops):
        for (w, o, host, what), xs in sorted(data.items()):
            if o != op:
                continue
            xs = sorted(xs)
            ys = [(i + 1) / len(xs) for i in range(len(xs))]
            ax.step(xs, ys, where="post", label=f"{w} worker(s), {host}, {what}",
                    linestyle={"dns": "-", "http-nodeport": ":"}.get(what, "--"))
        ax.axvline(50, color="red", linewidth=0.8)
        ax.text(51, 0.05, "target p99 50 ms", color="red", fontsize=8)
        ax.set_title(f"service {op}: API change -> host sees it (paper: ~5000 ms)")
        ax.set_xlabel("ms after the change in the API server")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("fraction of runs")
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
