#!/usr/bin/env python3
"""What a served inference costs in CPU, against in-process ONNX Runtime (bench/serving.sh).

  cpu_cost.py snapshot PID URL MODEL
      one JSON line: the process's CPU-seconds (utime + stime from /proc/PID/stat) and MODEL's
      counters from URL/metrics (rows inferred, batches run, the batch-size histogram).
  cpu_cost.py inprocess SPINDLE REPO MODEL ENGINE BATCHES DURATION OUT
      CPU-seconds per image of `spindle bench engine` at each batch size: every size is run
      twice, for DURATION and for a short time, and the difference of the two runs' CPU (from
      the kernel's rusage of each child) over the difference of their images leaves out the
      model load and warm-up both share. Written to OUT as JSON {batch: seconds per image}.
  cpu_cost.py level BEFORE AFTER INPROCESS
      one JSON line for a level measured between two snapshots: inferences, mean batch size,
      the server's CPU-seconds per inference, in-process ONNX Runtime's at the batch sizes the
      server formed, and their ratio.
"""
import json
import os
import re
import subprocess
import sys
import urllib.request

TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE = re.compile(r'^(spindle_[a-z_]+)\{([^}]*)\} (\S+)$')


def snapshot(pid, url, model):
    # Field 2 (comm) may hold spaces; the fields after its closing parenthesis are fixed.
    stat = open(f"/proc/{pid}/stat").read()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime and stime, fields 14 and 15
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    out = {"cpu_s": cpu, "inferences": 0.0, "executions": 0.0, "batch_buckets": {}}
    for line in text.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2), float(m.group(3))
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if labels.get("model") != model:
            continue
        if name == "spindle_inference_count_total":
            out["inferences"] += value
        elif name == "spindle_execution_count_total":
            out["executions"] += value
        elif name == "spindle_batch_size_bucket" and labels["le"] != "+Inf":
            le = str(int(float(labels["le"])))
            out["batch_buckets"][le] = out["batch_buckets"].get(le, 0.0) + value
    return out


def run_child(cmd):
    """Runs cmd and returns its CPU-seconds (user + system) from the kernel's rusage."""
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        sys.exit(f"cpu_cost: {' '.join(cmd)} failed with status {status}")
    return usage.ru_utime + usage.ru_stime


def inprocess(spindle, repo, model, engine, batches, duration, out):
    per_image = {}
    for batch in batches.split(","):
        runs = []
        for d in (duration, "300ms"):
            report = f"{out}.b{batch}.{d}.json"
            cpu = run_child([spindle, "bench", "engine", "--repo", repo, "--model", model,
                             "--engine", engine, "--batches", batch, "--duration", d,
                             "--json", report])
            result = json.load(open(report))["results"][0]
            runs.append((cpu, result["runs"] * result["batch"]))
        (cpu_long, images_long), (cpu_short, images_short) = runs
        per_image[batch] = (cpu_long - cpu_short) / max(images_long - images_short, 1)
        print(f"in-process {model} batch {batch}: {per_image[batch] * 1e3:.3f} CPU-ms per image",
              file=sys.stderr)
    json.dump(per_image, open(out, "w"), indent=2)


def level(before, after, table):
    inferences = after["inferences"] - before["inferences"]
    executions = after["executions"] - before["executions"]
    cpu = after["cpu_s"] - before["cpu_s"]
    # The histogram's buckets are 1, 2, 4, ...: the batches with at most `le` rows and more than
    # the previous bound. Each bucket's batches are priced at in-process ONNX Runtime's cost at
    # its upper bound (measured at exactly those sizes), weighted by their share of the rows;
    # rows per bucket are estimated as batches x bound, scaled so they add up to the real rows.
    bounds = sorted(int(le) for le in after["batch_buckets"])
    previous, weights = 0.0, {}
    for le in bounds:
        cumulative = after["batch_buckets"][str(le)] - before["batch_buckets"].get(str(le), 0.0)
        batches, previous = cumulative - previous, cumulative
        if batches > 0:
            priced = min((b for b in map(int, table) if b >= le), default=max(map(int, table)))
            weights[priced] = weights.get(priced, 0.0) + batches * le
    total = sum(weights.values())
    inprocess_cpu = sum(w / total * table[str(b)] for b, w in weights.items()) if total else None
    served_cpu = cpu / inferences if inferences else None
    return {
        "inferences": inferences,
        "mean_batch": inferences / executions if executions else None,
        "server_cpu_s": cpu,
        "server_cpu_per_inference_s": served_cpu,
        "inprocess_cpu_per_inference_s": inprocess_cpu,
        "cpu_ratio": served_cpu / inprocess_cpu if served_cpu and inprocess_cpu else None,
    }


def main():
    command, args = sys.argv[1], sys.argv[2:]
    if command == "snapshot":
        print(json.dumps(snapshot(args[0], args[1], args[2])))
    elif command == "inprocess":
        inprocess(*args)
    elif command == "level":
        before, after = (json.loads(open(p).read()) for p in args[:2])
        print(json.dumps(level(before, after, json.load(open(args[2])))))
    else:
        sys.exit(f"cpu_cost: unknown command {command!r}; expected snapshot, inprocess or level")


if __name__ == "__main__":
    main()
