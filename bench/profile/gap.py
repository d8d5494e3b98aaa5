#!/usr/bin/env python3
"""gap.py — the CPU gap between two servers, by category, from profile.sh's output.

    bench/profile/gap.py OUTDIR SCENARIO [A [B [TOP]]]

A and B default to frameloop and c. It takes the median task-clock per message of
the stat windows (OUT/A.SCENARIO.summary.txt), the self-time shares of the
cpu-clock profile (OUT/A.SCENARIO.perf.data, through `perf report --sort
dso,symbol`), multiplies them into ns per message, sums them by category, and
lists the TOP symbols whose ns per message differ most. The categories are the
rows of bench/PROFILE.md's "The gap by category".
"""
import re
import statistics
import subprocess
import sys


def ns_per_msg(out, srv, sc):
    text = open(f"{out}/{srv}.{sc}.summary.txt").read()
    xs = [float(m.group(1)) for m in re.finditer(r"task-clock\s+\d+ ms\s+([\d.]+) ns/msg", text)]
    return statistics.median(xs), xs


def shares(out, srv, sc):
    rep = subprocess.run(["perf", "report", "-i", f"{out}/{srv}.{sc}.perf.data", "--no-children",
                          "--sort", "dso,symbol", "--stdio", "-g", "none"],
                         capture_output=True, text=True, check=True).stdout
    r = {}
    for line in rep.splitlines():
        m = re.match(r"\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*?)\s+-\s+-\s*$", line)
        if not m:
            continue
        pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
        key = (kind, dso, sym)
        r[key] = r.get(key, 0) + pct
    return r


def category(key):
    kind, dso, s = key
    if kind == ".":
        if dso.startswith("libc"):
            return "user: system call wrappers"
        if dso == "cserver":
            return "user: server code"
        if "memmove" in s or "memclr" in s:
            return "user: copy (memmove)"
        if "yscall" in s or s.startswith("golang.org/x/sys"):
            return "user: system call wrappers"
        if "clock_gettime" in s or s.startswith("time.") or "nanotime" in s:
            return "user: clock reads"
        if s.startswith("runtime.") or s.startswith("internal/runtime"):
            return "user: Go runtime"
        return "user: server code"
    if any(w in s for w in ("finish_task_switch", "schedule", "pick_next", "enqueue_", "dequeue_",
                            "update_curr", "switch_")):
        return "kernel: scheduling and sleep"
    if s.startswith("ep_") or "epoll" in s or "select_estimate" in s:
        return "kernel: epoll"
    if any(w in s for w in ("hrtimer", "timerqueue", "tick_", "clockevents", "lapic")):
        return "kernel: timers"
    if any(w in s for w in ("fdget", "fput", "vfs_", "ksys_", "syscall", "entry_", "exit_to_user",
                            "sock_write_iter", "sock_read_iter", "import_", "rw_verify", "do_writev")):
        return "kernel: syscall entry and VFS"
    if "read_tsc" in s:
        return "kernel: clock reads"
    return "kernel: TCP/IP, skb, softirq"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, sc = sys.argv[1], sys.argv[2]
    a = sys.argv[3] if len(sys.argv) > 3 else "frameloop"
    b = sys.argv[4] if len(sys.argv) > 4 else "c"
    top = int(sys.argv[5]) if len(sys.argv) > 5 else 15
    na, xa = ns_per_msg(out, a, sc)
    nb, xb = ns_per_msg(out, b, sc)
    sa, sb = shares(out, a, sc), shares(out, b, sc)
    print(f"{sc}: {a} {na:.0f} ns/msg (windows {', '.join(f'{x:.0f}' for x in xa)}), "
          f"{b} {nb:.0f} ns/msg (windows {', '.join(f'{x:.0f}' for x in xb)}): {na / nb:.3f}×, gap {na - nb:+.0f} ns")
    ca, cb = {}, {}
    for k, p in sa.items():
        ca[category(k)] = ca.get(category(k), 0) + p * na / 100
    for k, p in sb.items():
        cb[category(k)] = cb.get(category(k), 0) + p * nb / 100
    print(f"  {'category':36s} {a:>10s} {b:>10s} {'gap':>8s}")
    for c in sorted(set(ca) | set(cb), key=lambda c: -(ca.get(c, 0) - cb.get(c, 0))):
        print(f"  {c:36s} {ca.get(c, 0):10.0f} {cb.get(c, 0):10.0f} {ca.get(c, 0) - cb.get(c, 0):+8.0f}")
    syms = {}
    for k in set(sa) | set(sb):
        syms[k[2]] = (syms.get(k[2], (0, 0))[0] + sa.get(k, 0) * na / 100,
                      syms.get(k[2], (0, 0))[1] + sb.get(k, 0) * nb / 100)
    rows = sorted(((x - y, x, y, s) for s, (x, y) in syms.items()), reverse=True)
    print(f"  symbols whose ns/msg differ most ({a}, {b}):")
    for d, x, y, s in rows[:top]:
        print(f"    {d:+7.0f} {x:7.0f} {y:7.0f}  {s}")


if __name__ == "__main__":
    main()
