"""Summarises a bench/suite.sh run: one table per model (best throughput of every server and
protocol, its ratio to the in-process ONNX Runtime limit, latency), suite.csv with the same
rows, and suite.svg, a bar chart of every configuration's best throughput as a fraction of the
limit, one group per model.

Usage: python3 bench/suite_report.py RESULTS_DIR MODEL...
"""

import csv
import json
import sys
from pathlib import Path

CONFIGS = [
    ("ort-http-binary", "Spindle, ORT, HTTP binary"),
    ("ort-grpc", "Spindle, ORT, gRPC"),
    ("ort-samples", "Spindle, ORT, HTTP binary, real samples"),
    ("ort-http-json", "Spindle, ORT, v2 JSON"),
    ("tract-http-binary", "Spindle, tract, HTTP binary"),
    ("mlserver-http-json", "MLServer 1.7.1 + onnxruntime, v2 JSON"),
    ("ray-http-json", "Ray Serve + onnxruntime, v2 JSON"),
    ("bentoml-http-json", "BentoML + onnxruntime, v2 JSON"),
    ("torchserve-http-json", "TorchServe 0.12.0 + onnxruntime, v2 JSON"),
]
COLOURS = ["#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#ff7f0e", "#d62728", "#8c564b", "#e377c2", "#bcbd22"]
# The peers, each against Spindle with the same JSON requests and with its best protocol.
PEERS = [
    ("mlserver-http-json", "MLServer"),
    ("ray-http-json", "Ray Serve"),
    ("bentoml-http-json", "BentoML"),
    ("torchserve-http-json", "TorchServe"),
]


def read_report(path):
    """A loadtest JSON report, or None when the run wrote none (it failed before any load:
    the file is created empty up front) or left none."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    return json.loads(path.read_text())


def load(results, models):
    table = {}
    for model in models:
        limit = json.loads((results / f"suite-{model}-inprocess.json").read_text())
        rows = []
        for key, label in CONFIGS:
            report = read_report(results / f"suite-{model}-{key}.json")
            if report is None or not report["levels"]:
                continue
            levels = report["levels"]
            best = max(levels, key=lambda l: l["inferences_per_s"])
            first = levels[0]
            rows.append({
                "model": model,
                "config": key,
                "label": label,
                "rows_per_request": report["rows_per_request"],
                "best_inferences_per_s": best["inferences_per_s"],
                "at_concurrency": best["concurrency"],
                "ratio_to_limit": best["inferences_per_s"] / limit["best"]["images_per_s"],
                "p50_ms_lowest_concurrency": first["p50_us"] / 1000,
                "p99_ms_at_best": best["p99_us"] / 1000,
                "errors": sum(l["errors"]["total"] for l in levels),
            })
        table[model] = (limit, rows)
    return table


def print_tables(table):
    for model, (limit, rows) in table.items():
        best = limit["best"]
        one = limit["results"][0]
        print(f"\n{model}: in-process ONNX Runtime limit {best['images_per_s']:,.0f} inferences/s "
              f"(batch {best['batch']}); batch {one['batch']} p50 {one['p50_us'] / 1000:.2f} ms")
        print(f"{'configuration':<42} {'rows/req':>8} {'best inf/s':>11} {'at c':>5} {'of limit':>9} "
              f"{'p50 ms c_min':>12} {'p99 ms':>8} {'errors':>7}")
        for r in rows:
            print(f"{r['label']:<42} {r['rows_per_request']:>8} {r['best_inferences_per_s']:>11,.1f} "
                  f"{r['at_concurrency']:>5} {r['ratio_to_limit']:>9.2f} {r['p50_ms_lowest_concurrency']:>12.2f} "
                  f"{r['p99_ms_at_best']:>8.1f} {r['errors']:>7}")
        by = {r["config"]: r["best_inferences_per_s"] for r in rows}
        for peer_key, peer_name in PEERS:
            peer = by.get(peer_key)
            if peer:
                for key in ["ort-http-json", "ort-http-binary", "ort-grpc"]:
                    if by.get(key):
                        print(f"  Spindle {key} / {peer_name} v2 JSON: {by[key] / peer:.2f}x")
        # A configuration whose every request failed has 0 here: no ratio to print.
        if by.get("ort-samples") and by.get("ort-http-binary"):
            print(f"  real samples (server-side decoding) / ready tensors: {by['ort-samples'] / by['ort-http-binary']:.2f}")


def print_peers(results, models):
    """Per concurrency level: each peer beside Spindle with the same KServe v2 JSON requests."""
    for model in models:
        ours = read_report(results / f"suite-{model}-ort-http-json.json")
        if ours is None:
            continue
        ours = {l["concurrency"]: l for l in ours["levels"]}
        for key, name in PEERS:
            peer = read_report(results / f"suite-{model}-{key}.json")
            if peer is None:
                continue
            print(f"\n{model}: Spindle (ORT) vs {name}, same KServe v2 JSON requests")
            print(f"{'concurrency':>11} {name + ' inf/s':>16} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'Spindle inf/s':>14} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6}")
            for level in peer["levels"]:
                mine = ours.get(level["concurrency"])
                if mine is None:
                    continue
                ratio = mine["inferences_per_s"] / max(level["inferences_per_s"], 1e-9)
                print(f"{level['concurrency']:>11} {level['inferences_per_s']:>16,.1f} "
                      f"{level['p50_us'] / 1000:>8.2f} {level['p99_us'] / 1000:>8.2f} "
                      f"{mine['inferences_per_s']:>14,.1f} {mine['p50_us'] / 1000:>8.2f} "
                      f"{mine['p99_us'] / 1000:>8.2f} {ratio:>6.2f}")


def write_csv(table, path):
    rows = [r for _, rs in table.values() for r in rs]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "label"])
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items() if k != "label"})


def esc(text):
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_svg(table, path):
    bar, gap, left, width = 16, 3, 250, 420
    scale_max = max([1.0] + [r["ratio_to_limit"] for _, rs in table.values() for r in rs])
    y = 64
    body = []
    for model, (limit, rows) in table.items():
        body.append(f'<text x="10" y="{y + 12}" font-weight="bold">{esc(model)} '
                    f'(limit {limit["best"]["images_per_s"]:,.0f}/s at batch {limit["best"]["batch"]})</text>')
        y += 20
        for r in rows:
            colour = COLOURS[[k for k, _ in CONFIGS].index(r["config"])]
            w = max(1.0, width * r["ratio_to_limit"] / scale_max)
            body.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{esc(r["label"])}</text>')
            body.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar}" fill="{colour}"/>')
            body.append(f'<text x="{left + w + 4:.1f}" y="{y + 12}">{r["ratio_to_limit"]:.2f} '
                        f'({r["best_inferences_per_s"]:,.0f}/s)</text>')
            y += bar + gap
        y += 14
    limit_x = left + width / scale_max
    total_w = left + width + 130
    head = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{y + 10}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{total_w}" height="{y + 10}" fill="white"/>',
        '<text x="10" y="20" font-size="15" font-weight="bold">Best throughput as a fraction of '
        'in-process ONNX Runtime</text>',
        '<text x="10" y="40" fill="#555">bench/suite.sh: every server measured by spindle loadtest '
        'on the same machine in one run; inferences/s in brackets</text>',
        f'<line x1="{limit_x:.1f}" y1="52" x2="{limit_x:.1f}" y2="{y}" stroke="#888" stroke-dasharray="4 3"/>',
        f'<text x="{limit_x + 3:.1f}" y="60" fill="#555">limit = 1.0</text>',
    ]
    Path(path).write_text("\n".join(head + body + ["</svg>"]) + "\n")


def main():
    results = Path(sys.argv[1])
    models = sys.argv[2:]
    table = load(results, models)
    print_tables(table)
    print_peers(results, models)
    write_csv(table, results / "suite.csv")
    write_svg(table, results / "suite.svg")
    print(f"\nwrote {results / 'suite.csv'} and {results / 'suite.svg'}")


if __name__ == "__main__":
    main()
