#!/usr/bin/env python3
"""Helper of scripts/bench-hosts.sh: timed `mse deploy` runs, many apps in a
row, the memory of the apps' process trees, and the report.

  bench-hosts.py deploy MSE APP_DIR OUT NAME
      one deploy under NAME, timed from the start of `mse deploy --json` to
      its exit, then stopped; appended to the list in OUT
  bench-hosts.py many MSE APP_DIR OUT NAME_PREFIX COUNT
      COUNT apps under new names, one after the other, left running
  bench-hosts.py rss OUT UUIDS_FILE LABEL=PID...
      the RSS of each app's `mse-run` process tree, and of the given pids
  bench-hosts.py report WORK
      prints the results; exit 1 when the target is missed

`mse` takes MSE_CONF_PATH from the environment. Every command has a bound.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import time

DEPLOY_TIMEOUT = 300
STOP_TIMEOUT = 60


def set_name(app_dir, name):
    path = os.path.join(app_dir, "mse.toml")
    with open(path) as f:
        text = f.read()
    text, count = re.subn(r"(?m)^name = .*$", f'name = "{name}"', text, count=1)
    if count != 1:
        sys.exit(f"no `name = …` line in {path}")
    with open(path, "w") as f:
        f.write(text)


def deploy(mse, app_dir, log):
    """One `mse deploy --json`; (seconds from start to exit, its output)."""
    start = time.perf_counter()
    try:
        result = subprocess.run([mse, "deploy", "--json"], cwd=app_dir, capture_output=True,
                                text=True, timeout=DEPLOY_TIMEOUT)
    except subprocess.TimeoutExpired:
        sys.exit(f"mse deploy did not end within {DEPLOY_TIMEOUT} s")
    elapsed = time.perf_counter() - start
    with open(log, "w") as f:
        f.write(result.stdout)
        f.write(result.stderr)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
        sys.exit(f"mse deploy failed (exit {result.returncode}), see {log}")
    out = json.loads(result.stdout)
    if out.get("status") != "running" or out.get("verified") is not True:
        sys.exit(f"mse deploy ended without a running, verified app: {result.stdout}")
    return elapsed, out


def stop(mse, uuid):
    try:
        result = subprocess.run([mse, "stop", uuid], capture_output=True, text=True,
                                timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        sys.exit(f"mse stop {uuid} did not end within {STOP_TIMEOUT} s")
    if result.returncode != 0:
        sys.exit(f"mse stop {uuid} failed: {result.stdout}{result.stderr}")


def cmd_deploy(mse, app_dir, out, name):
    """One timed deploy under `name`, stopped after; appended to `out`."""
    set_name(app_dir, name)
    log = os.path.join(os.path.dirname(os.path.abspath(out)), f"{name}.log")
    elapsed, result = deploy(mse, app_dir, log)
    stop(mse, result["uuid"])
    runs = []
    if os.path.exists(out):
        with open(out) as f:
            runs = json.load(f)
    runs.append({"seconds": elapsed, "uuid": result["uuid"], "timings": result.get("timings", {})})
    with open(out, "w") as f:
        json.dump(runs, f)


def cmd_many(mse, app_dir, out, prefix, count):
    logs = os.path.dirname(os.path.abspath(out))
    start = time.perf_counter()
    apps = []
    for i in range(1, count + 1):
        set_name(app_dir, f"{prefix}{i}")
        elapsed, result = deploy(mse, app_dir, os.path.join(logs, f"{prefix}{i}.log"))
        apps.append({"uuid": result["uuid"], "seconds": elapsed})
    total = time.perf_counter() - start
    with open(out, "w") as f:
        json.dump({"total_seconds": total, "apps": apps}, f)


def processes():
    """pid -> (ppid, VmRSS kB, command line bytes), for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            # The command name is in parentheses and may hold spaces.
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            rss = 0
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
                        break
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        table[pid] = (ppid, rss, cmdline)
    return table


def cmd_rss(out, uuids_file, host_pids):
    with open(uuids_file) as f:
        uuids = [a["uuid"] for a in json.load(f)["apps"]]
    table = processes()
    children = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    apps = {}
    for uuid in uuids:
        needle = b"/" + uuid.encode() + b"/launch.json\0"
        roots = [pid for pid, (_, _, cmdline) in table.items()
                 if needle in cmdline + b"\0" and b"mse-run" in cmdline]
        tree, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid in tree:
                continue
            tree.add(pid)
            todo.extend(children.get(pid, []))
        apps[uuid] = {"roots": roots, "processes": len(tree),
                      "rss_kb": sum(table[p][1] for p in tree)}
    hosts = {}
    for item in host_pids:
        label, _, pid = item.rpartition("=")
        hosts[label or pid] = table.get(int(pid), (0, 0, b""))[1]
    with open(out, "w") as f:
        json.dump({"apps": apps, "hosts_rss_kb": hosts}, f)


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]


def cmd_report(work):
    def load(name):
        with open(os.path.join(work, name)) as f:
            return json.load(f)

    local = [r["seconds"] * 1000 for r in load("local-deploys.json")]
    remote = [r["seconds"] * 1000 for r in load("remote-deploys.json")]
    print(f"1. mse deploy to `running`, {len(local)} runs each after a warm-up, the two "
          "platforms in turn (ms, start to exit)")
    print(f"  {'platform':<34} {'median':>8} {'p90':>8} {'min':>8} {'max':>8}")
    for label, values in (("local runner (api,proxy,node)", local),
                          ("remote host (api,proxy + 1 host)", remote)):
        print(f"  {label:<34} {statistics.median(values):8.0f} {pct(values, 0.9):8.0f} "
              f"{min(values):8.0f} {max(values):8.0f}")
    diff = statistics.median(remote) - statistics.median(local)
    print(f"  remote median - local median: {diff:+.0f} ms")
    stages = {}
    for name, label in (("local-deploys.json", "local"), ("remote-deploys.json", "remote")):
        runs = load(name)
        for key in runs[0]["timings"]:
            if key == "total":
                continue
            stages.setdefault(key, {})[label] = statistics.median(
                r["timings"].get(key, 0) * 1000 for r in runs)
    if stages:
        print("  median by stage (ms, from `mse deploy --json`): "
              + ", ".join(f"{k} {v.get('local', 0):.0f}/{v.get('remote', 0):.0f}"
                          for k, v in stages.items()) + "  (local/remote)")

    many = load("many.json")
    rss = load("rss.json")
    nodes = load("nodes.json")
    count = len(many["apps"])
    per_app = [a["seconds"] * 1000 for a in many["apps"]]
    print(f"2. {count} apps across two hosts, deployed one after the other")
    print(f"  wall time until all {count} are running: {many['total_seconds']:.1f} s "
          f"(per deploy: median {statistics.median(per_app):.0f} ms, p90 {pct(per_app, 0.9):.0f} ms)")
    ours = {a["uuid"] for a in many["apps"]}
    for node in sorted(nodes, key=lambda n: n["node"]):
        placed = [a for a in node.get("apps", []) if a in ours]
        print(f"  node {node['node']:<4} ({node.get('kind')}, {node.get('address')}): "
              f"{len(placed)} apps, uses {node.get('used')} of {node.get('capacity')}")
    trees = rss["apps"]
    missing = [u for u, t in trees.items() if not t["roots"]]
    total_kb = sum(t["rss_kb"] for t in trees.values())
    procs = [t["processes"] for t in trees.values()]
    print(f"  app process trees (mse-run and descendants): {total_kb / 1024:.0f} MB in all, "
          f"{total_kb / 1024 / count:.1f} MB per app (RSS; "
          f"{min(procs)}-{max(procs)} processes per app)")
    if missing:
        print(f"  WARNING: no mse-run process found for {len(missing)} apps")
    hosts = rss["hosts_rss_kb"]
    print("  mse-server processes' own RSS: "
          + ", ".join(f"{label} {kb / 1024:.1f} MB" for label, kb in hosts.items()))
    ok = diff <= 50
    print(f"target remote median at most 50 ms above local: {'met' if ok else 'MISSED'} ({diff:+.0f} ms)")
    sys.exit(0 if ok else 1)


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    command, rest = args[0], args[1:]
    if command == "deploy" and len(rest) == 4:
        cmd_deploy(*rest)
    elif command == "many" and len(rest) == 5:
        cmd_many(rest[0], rest[1], rest[2], rest[3], int(rest[4]))
    elif command == "rss" and len(rest) >= 2:
        cmd_rss(rest[0], rest[1], rest[2:])
    elif command == "report" and len(rest) == 1:
        cmd_report(rest[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
