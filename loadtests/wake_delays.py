#!/usr/bin/env python3
"""How long the gateway's HTTP threads wait for their core once woken, and who held it.

A request that reaches a sleeping HTTP worker wakes it; until the scheduler runs it, the
request waits, whatever the gateway's own code costs. On a core shared with the inference
log's threads, that wait is where logging adds tail latency without adding work to the
request. This reads a `perf sched record` file and reports, for the threads whose name starts
with --threads, the delay from each wake-up (`sched_waking`) to the moment the thread runs,
and, over the waits longer than --over, how long each other thread ran on that CPU meanwhile
(`swapper/N` is the CPU leaving idle).

The waker is usually the load generator on another CPU, so record every CPU the server and
the client run on (or all of them); a recording of the server's CPU alone has no wake-ups:

    perf sched record -a -o sched.data -- sleep 10      # while the load runs
    python3 loadtests/wake_delays.py sched.data [--threads actix-rt] [--over 50]
"""

import argparse
import collections
import re
import subprocess
import sys
import tempfile

LINE = re.compile(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)")


def events(path):
    """(cpu, time, event, fields, trace) for every sched_waking, sched_switch and
    sched_migrate_task in the file."""
    # Streamed: a recording of a few seconds is hundreds of megabytes of text. Its warnings go
    # to a file, so that a full stderr pipe cannot stall it.
    errors = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        ["perf", "script", "-i", path, "-F", "comm,tid,cpu,time,event,trace"],
        stdout=subprocess.PIPE, stderr=errors, text=True)
    for line in proc.stdout:
        m = LINE.match(line)
        if not m:
            continue
        _comm, _tid, cpu, t, event, trace = m.groups()
        if event.startswith(("sched:sched_waking", "sched:sched_switch", "sched:sched_migrate_task")):
            yield int(cpu), float(t), event, dict(re.findall(r"(\w+)=(\S+)", trace)), trace
    if proc.wait() != 0:
        errors.seek(0)
        last = errors.read().strip().splitlines()[-1:]
        sys.exit(f"perf script could not read {path}: {' '.join(last)}")


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="a perf sched record file")
    ap.add_argument("--threads", default="actix-rt", help="name prefix of the threads to follow")
    ap.add_argument("--over", type=float, default=50.0, help="µs: waits longer than this are blamed")
    args = ap.parse_args()

    names = {}            # tid -> name, for the followed threads
    on_cpu = {}           # cpu -> (name, since) of the task running there
    running = set()       # followed tids on a CPU now
    waiting = {}          # followed tid -> (woken at, cpu, {name: µs run on that cpu meanwhile})
    delays = []
    switch_ins = 0
    switches = 0
    blame = collections.Counter()
    blamed_waits = collections.Counter()
    over = args.over / 1e6

    for cpu, t, event, f, trace in events(args.data):
        if event.startswith("sched:sched_waking"):
            tid = f.get("pid")
            comm = re.search(r"comm=(.+?) pid=", trace)
            if comm and comm.group(1).startswith(args.threads):
                names[tid] = comm.group(1)
                if tid not in running and tid not in waiting:
                    waiting[tid] = (t, int(f.get("target_cpu", cpu)), collections.Counter())
            continue
        if event.startswith("sched:sched_migrate_task"):
            # A woken thread moved before it ran: its wait is on the CPU it moved to.
            tid = f.get("pid")
            if tid in waiting and "dest_cpu" in f:
                woken, _target, held = waiting[tid]
                waiting[tid] = (woken, int(f["dest_cpu"]), held)
            continue
        prev = re.search(r"prev_comm=(.+?) prev_pid=(\d+)", trace)
        nxt = re.search(r"next_comm=(.+?) next_pid=(\d+)", trace)
        if not prev or not nxt:
            continue
        switches += 1
        prev_name, prev_tid = prev.groups()
        next_name, next_tid = nxt.groups()
        since = on_cpu.get(cpu, (prev_name, None))[1]
        # What ran on this CPU until now counts against every followed thread woken onto it.
        for tid, (woken, target, held) in waiting.items():
            if target == cpu and tid != prev_tid:
                start = woken if since is None else max(woken, since)
                if t > start:
                    held[prev_name] += t - start
        if prev_name.startswith(args.threads):
            names[prev_tid] = prev_name
            running.discard(prev_tid)
            # A wake-up that came while it still ran was used up by that run.
            waiting.pop(prev_tid, None)
        if next_tid in waiting:
            woken, _target, held = waiting.pop(next_tid)
            delay = t - woken
            delays.append(delay)
            if delay > over:
                for name, secs in held.items():
                    blame[name] += secs
                    blamed_waits[name] += 1
        if next_name.startswith(args.threads):
            switch_ins += 1
            names[next_tid] = next_name
            running.add(next_tid)
        on_cpu[cpu] = (next_name, t)

    if not switches:
        sys.exit(f"no sched_switch lines in the form prev_comm=... next_comm=... in {args.data}")
    if not delays:
        sys.exit(f"no wake-ups of threads named {args.threads}* in {args.data}: record the "
                 "waker's CPU too (perf sched record -a)")
    if len(delays) < switch_ins / 10:
        print(f"warning: {len(delays)} wake-ups for {switch_ins} switch-ins: most wakers' CPUs "
              "were not recorded (perf sched record -a)", file=sys.stderr)
    delays.sort()
    us = lambda s: f"{s * 1e6:.0f}"
    long_waits = [d for d in delays if d > over]
    print(f"{len(delays)} wake-ups of {len(names)} thread(s) named {args.threads}*: delay to run "
          f"p50 {us(percentile(delays, 0.5))} µs, p99 {us(percentile(delays, 0.99))}, "
          f"p99.9 {us(percentile(delays, 0.999))}, max {us(delays[-1])}")
    print(f"{len(long_waits)} waits over {args.over:g} µs, {sum(long_waits) * 1e3:.1f} ms in all; "
          "meanwhile on their CPU:")
    print()
    print("| thread | ms | waits | µs a wait |")
    print("| --- | ---: | ---: | ---: |")
    for name, secs in blame.most_common(12):
        print(f"| `{name}` | {secs * 1e3:.1f} | {blamed_waits[name]} | {secs * 1e6 / blamed_waits[name]:.0f} |")


if __name__ == "__main__":
    main()
