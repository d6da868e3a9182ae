#!/usr/bin/env python3
"""Shared timing helper for burrow's benchmark scripts (standard library only).

What it does, the same way for every benchmark:
  * probes each case once: a case that fails is reported with its reason and skipped, never aborts the run;
  * runs the cases INTERLEAVED (one run of each case per round, in a fresh random order every round), so that
    drift on a shared machine (other jobs, CPU frequency, page cache) hits every case alike;
  * times each run as the wall-clock of the whole command, from a timer around subprocess in this process;
  * prints median, p90, min, the first (cold) run and the ratio of each median to a baseline case's median;
  * checks targets such as "burrow/bwrap<=1.0" (ratio of medians, with a bootstrap 95% interval) or
    "burrow-mem-burrow<=10" (difference of medians in ms).

Self-test: python3 -m doctest scripts/benchlib.py

As a library (the file name has no dash so that it imports):
    sys.path.insert(0, os.path.dirname(__file__)); import benchlib
    cases = [benchlib.Case("bwrap", ["bwrap", ...]), benchlib.Case("burrow", [...])]
    results = benchlib.run_interleaved(cases, runs=30)
    print(benchlib.format_table(results, baseline="burrow"))
    ok, line = benchlib.check_target(results, "burrow/bwrap<=1.0")

From a shell script:
    benchlib.py -n 30 --prefix 'setpriv ... env HOME=/home/u' --baseline burrow \\
        --case burrow 'burrow run --rootfs R -- /bin/true' --case bwrap 'bwrap --bind R / /bin/true' \\
        --target 'burrow/bwrap<=1.0'
A case command is split with shlex (no shell is started); "{i}" in it becomes the run number, for tools that
need a unique container name per run.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import statistics
import subprocess
import threading
import sys
import tempfile
import time
from dataclasses import dataclass, field

DEFAULT_TIMEOUT_S = 60.0


@dataclass
class Case:
    """One command to time. `argv` may contain "{i}" (replaced by the run number)."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None
    note: str = ""

    def command(self, i: int) -> list[str]:
        return [a.replace("{i}", str(i)) for a in self.argv]


@dataclass
class Result:
    case: Case
    samples_s: list[float] = field(default_factory=list)
    first_s: float | None = None
    failures: int = 0
    skipped: str | None = None  # why the case was left out

    @property
    def ok(self) -> bool:
        return self.skipped is None and bool(self.samples_s)


def percentile(values: list[float], p: float) -> float:
    """Percentile with linear interpolation between closest ranks (numpy's default method).

    >>> percentile([4, 1, 3, 2], 50)
    2.5
    >>> round(percentile(list(range(1, 11)), 90), 6)
    9.1
    """
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def median(values: list[float]) -> float:
    return percentile(values, 50.0)


def time_once(case: Case, i: int, errfile, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[float, int, str]:
    """Run the case once; return (seconds, exit status, tail of stderr).

    stdout goes to /dev/null and stderr to a reused temporary file: no pipe to drain, so the harness adds the
    same small fork/exec/wait cost to every case.
    """
    errfile.seek(0)
    errfile.truncate()
    argv = case.command(i)
    # A blocking wait: subprocess.run(timeout=...) polls waitpid with sleeps of 0.5, 1, 2, 4, 8 ... ms, which
    # would round every time up to 3.5, 7.5, 15.5 or 31.5 ms. The timeout is a watchdog thread instead.
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errfile,
                                env=case.env)
    except FileNotFoundError:
        return 0.0, 127, f"{argv[0]}: command not found"
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    rc = proc.wait()
    watchdog.cancel()
    if rc == -9 and time.perf_counter() - t0 >= timeout:
        return time.perf_counter() - t0, 124, f"timed out after {timeout:.0f} s"
    dt = time.perf_counter() - t0
    errfile.seek(0)
    return dt, rc, summarize_stderr(errfile.read().decode(errors="replace"))


def summarize_stderr(text: str) -> str:
    r"""One line for a failure: the first line that says "error", else the last non-empty line.

    >>> summarize_stderr("warning: x\nError: no such file\n\nUsage: ...\n")
    'Error: no such file'
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    return next((ln for ln in lines if "error" in ln.lower()), lines[-1])[:300]


def probe(case: Case, errfile, timeout: float = DEFAULT_TIMEOUT_S) -> tuple[str | None, float]:
    """Run a case once before measuring: (None, seconds) when it works, else (reason, seconds)."""
    dt, rc, err = time_once(case, 0, errfile, timeout)
    if rc == 0:
        return None, dt
    return f"{describe_status(rc)}: {err or 'no message'}", dt


def describe_status(rc: int) -> str:
    """subprocess reports death by signal N as -N."""
    return f"killed by signal {-rc}" if rc < 0 else f"exit {rc}"


def _say(log, msg: str) -> None:
    if log is not None:
        print(msg, file=log)


def run_interleaved(cases: list[Case], runs: int = 30, warmup: int = 1, seed: int | None = None,
                    timeout: float = DEFAULT_TIMEOUT_S, max_failures: int = 3,
                    log=sys.stderr) -> list[Result]:
    """Probe every case, then time `runs` interleaved rounds after `warmup` untimed rounds.

    A case whose probe fails is skipped with the reason; a case that fails `max_failures` times during the
    rounds is dropped (its failed runs never enter the samples).
    """
    rng = random.Random(seed)
    results = [Result(c) for c in cases]
    with tempfile.TemporaryFile() as errfile:
        for r in results:
            reason, dt = probe(r.case, errfile, timeout)
            r.first_s = dt
            if reason:
                r.skipped = reason
                _say(log, f"skip {r.case.name}: {reason}")
        live = [r for r in results if r.skipped is None]
        total = warmup + runs
        for rnd in range(1, total + 1):
            order = live[:]
            rng.shuffle(order)
            for r in order:
                if r.skipped:
                    continue
                dt, rc, err = time_once(r.case, rnd, errfile, timeout)
                if rc != 0:
                    r.failures += 1
                    if r.failures >= max_failures:
                        r.skipped = f"failed {r.failures} times, last: {describe_status(rc)}: {err or 'no message'}"
                        _say(log, f"drop {r.case.name}: {r.skipped}")
                    continue
                if rnd > warmup:
                    r.samples_s.append(dt)
            if log is not None and log.isatty():
                print(f"\rround {rnd}/{total}", end="", file=log, flush=True)
        if log is not None and log.isatty():
            print(file=log)
    return results


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.1f}"


def format_table(results: list[Result], baseline: str | list[str] | None = None, title: str = "",
                 subtract: str | None = None, unit: str = "ms") -> str:
    """Median, p90, min, first run (ms), run count and ratio of each median to the baseline's median.

    With `subtract`, a "net" column shows each median minus that case's median: name a case that runs the
    bare harness (e.g. the wrapper around /bin/true) to see the cost of the tool alone.
    With another `unit` (e.g. "MB/s" for a throughput a benchmark put into `samples_s` itself), values are
    printed as they are instead of seconds shown as ms; min and p90 are then simply the lowest value and the
    90th percentile.
    """
    scale = 1000.0 if unit == "ms" else 1.0

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x * scale:.1f}"

    baseline = pick_baseline(results, baseline)
    base = _find(results, baseline) if baseline else None
    base_med = median(base.samples_s) if base and base.ok else None
    sub = _find(results, subtract) if subtract else None
    sub_med = median(sub.samples_s) if sub and sub.ok else None
    width = max([len(r.case.name) for r in results] + [4])
    lines = [title] if title else []
    hdr = f"{'case':<{width}}  {'median':>7} {'p90':>7} {'min':>7} {'first':>7} {'runs':>4} "
    hdr += f"{'net':>6}  " if sub_med is not None else " "
    lines.append(hdr + (f"ratio to {baseline}" if baseline else ""))
    for r in results:
        if not r.ok:
            lines.append(f"{r.case.name:<{width}}  skipped: {r.skipped or 'no successful run'}")
            continue
        med = median(r.samples_s)
        ratio = f"{med / base_med:.2f}" if base_med else "-"
        net = f"{(med - sub_med) * scale:>6.1f} " if sub_med is not None else ""
        fails = f"  ({r.failures} failed runs)" if r.failures else ""
        note = f"  {r.case.note}" if r.case.note else ""
        lines.append(f"{r.case.name:<{width}}  {fmt(med):>7} {fmt(percentile(r.samples_s, 90)):>7} "
                     f"{fmt(min(r.samples_s)):>7} {fmt(r.first_s):>7} {len(r.samples_s):>4} {net} {ratio:>5}"
                     f"{fails}{note}")
    legend = ("times in ms (wall-clock of the whole command); first = the untimed probe run" if unit == "ms"
              else f"values in {unit}")
    lines.append(legend + (f"; net = median - median of {subtract}" if sub_med is not None else ""))
    return "\n".join(lines)


def _find(results: list[Result], name: str | None) -> Result | None:
    return next((r for r in results if r.case.name == name), None)


def pick_baseline(results: list[Result], names: str | list[str] | None) -> str | None:
    """The first of `names` (a list or "a,b") that was measured: ratios stay readable when the preferred
    baseline (e.g. a binary still being written) was skipped."""
    if not names:
        return None
    wanted = names.split(",") if isinstance(names, str) else names
    for n in wanted:
        r = _find(results, n.strip())
        if r and r.ok:
            return n.strip()
    return wanted[0].strip()


def bootstrap_ratio_ci(a: list[float], b: list[float], rounds: int = 2000, seed: int = 1) -> tuple[float, float]:
    """95% bootstrap interval of median(a)/median(b): tells a real difference from noise."""
    rng = random.Random(seed)
    ratios = sorted(median(rng.choices(a, k=len(a))) / median(rng.choices(b, k=len(b))) for _ in range(rounds))
    return percentile(ratios, 2.5), percentile(ratios, 97.5)


def bootstrap_diff_ci(a: list[float], b: list[float], rounds: int = 2000, seed: int = 1) -> tuple[float, float]:
    """95% bootstrap interval of median(a) - median(b), in the samples' unit."""
    rng = random.Random(seed)
    diffs = sorted(median(rng.choices(a, k=len(a))) - median(rng.choices(b, k=len(b))) for _ in range(rounds))
    return percentile(diffs, 2.5), percentile(diffs, 97.5)

def check_target(results: list[Result], expr: str) -> tuple[bool | None, str]:
    """Check "A/B<=X" (ratio of medians) or "A-B<=X" (difference of medians in ms).

    Returns (True|False, line) or (None, line) when a side was skipped. Case names may contain '-', so the
    operator is the last '/' or the '-' that splits the expression into two known case names.
    """
    parsed = _parse_target(expr, {r.case.name for r in results})
    if parsed is None:
        return None, f"target {expr}: cannot parse (want A/B<=RATIO or A-B<=MS with known case names)"
    a_name, op, b_name, lim = parsed
    a, b = _find(results, a_name), _find(results, b_name)
    if not (a and a.ok and b and b.ok):
        missing = a_name if not (a and a.ok) else b_name
        return None, f"target {expr}: not measured ({missing} was skipped or not run)"
    ma, mb = median(a.samples_s), median(b.samples_s)
    if op == "/":
        ratio = ma / mb
        lo, hi = bootstrap_ratio_ci(a.samples_s, b.samples_s)
        ok = ratio <= lim
        return ok, (f"target {a_name}/{b_name} <= {lim:g}: {'MET' if ok else 'MISSED'}, ratio {ratio:.2f} "
                    f"(95% interval {lo:.2f}-{hi:.2f}; medians {_ms(ma)} / {_ms(mb)} ms)")
    delta_ms = (ma - mb) * 1000
    lo, hi = (x * 1000 for x in bootstrap_diff_ci(a.samples_s, b.samples_s))
    ok = delta_ms <= lim
    return ok, (f"target {a_name}-{b_name} <= {lim:g} ms: {'MET' if ok else 'MISSED'}, difference "
                f"{delta_ms:+.2f} ms (95% interval {lo:+.2f} to {hi:+.2f}; medians {_ms(ma)} - {_ms(mb)} ms)")


def _parse_target(expr: str, names: set[str]) -> tuple[str, str, str, float] | None:
    """Split "A/B<=X" or "A-B<=X". Names may contain '-': write the operator with spaces around it
    ("burrow-mem - burrow<=10"), or this prefers the split whose both sides are known case names, then one
    with a known side, then the last '/' or the first '-'.

    >>> _parse_target("burrow-mem - burrow <= 10", set())
    ('burrow-mem', '-', 'burrow', 10.0)
    >>> _parse_target("burrow-mem-burrow<=10ms", {"burrow", "burrow-mem"})
    ('burrow-mem', '-', 'burrow', 10.0)
    >>> _parse_target("burrow/bwrap<=1.0", set())
    ('burrow', '/', 'bwrap', 1.0)
    >>> _parse_target("burrow<bwrap", set()) is None
    True
    """
    left, sep, lim = expr.partition("<=")
    if not sep:
        return None
    try:
        limit = float(lim.strip().removesuffix("ms"))
    except ValueError:
        return None
    left = left.strip()
    for op in (" / ", " - "):   # an operator with spaces around it is unambiguous
        if op in left:
            a, _, b = left.rpartition(op)
            return a.strip(), op.strip(), b.strip(), limit
    splits = [(left[:i].strip(), ch, left[i + 1:].strip()) for i, ch in enumerate(left) if ch in "/-"]
    splits = [s for s in splits if s[0] and s[2]]
    if not splits:
        return None
    slashes = [s for s in splits if s[1] == "/"]
    fallback = slashes[-1] if slashes else splits[0]
    best = max(splits, key=lambda s: (s[0] in names) + (s[2] in names), default=fallback)
    a, op, b = best if (best[0] in names or best[2] in names) else fallback
    return a, op, b, limit


def to_json(results: list[Result], baseline: str | list[str] | None = None) -> dict:
    """Every sample and statistic, for plots or for comparing runs."""
    baseline = pick_baseline(results, baseline)
    base = _find(results, baseline) if baseline else None
    base_med = median(base.samples_s) if base and base.ok else None
    out = {"baseline": baseline, "cases": []}
    for r in results:
        row = {"name": r.case.name, "argv": r.case.argv, "skipped": r.skipped, "failures": r.failures,
               "first_ms": None if r.first_s is None else r.first_s * 1000,
               "samples_ms": [s * 1000 for s in r.samples_s]}
        if r.ok:
            med = median(r.samples_s)
            row.update(median_ms=med * 1000, p90_ms=percentile(r.samples_s, 90) * 1000,
                       min_ms=min(r.samples_s) * 1000, stdev_ms=statistics.pstdev(r.samples_s) * 1000,
                       ratio=(med / base_med) if base_med else None)
        out["cases"].append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Time commands interleaved; print medians, p90 and ratios.")
    ap.add_argument("-n", "--runs", type=int, default=30, help="timed runs per case (default 30)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds before timing (default 1)")
    ap.add_argument("--seed", type=int, default=None, help="seed of the per-round shuffle")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per run")
    ap.add_argument("--prefix", default="", help="words put before every case command (e.g. setpriv ... env)")
    ap.add_argument("--case", nargs=2, action="append", metavar=("NAME", "COMMAND"), default=[],
                    help="a case: its name and its command line (split with shlex, no shell)")
    ap.add_argument("--baseline", help="case whose median the ratios divide by; 'a,b': the first measured")
    ap.add_argument("--subtract", help="case whose median the 'net' column subtracts (the bare harness)")
    ap.add_argument("--target", action="append", default=[], help="A/B<=RATIO or A-B<=MS; repeatable")
    ap.add_argument("--title", default="", help="line printed above the table")
    ap.add_argument("--json", metavar="FILE", help="also write all samples and statistics as JSON")
    args = ap.parse_args(argv)
    if not args.case:
        ap.error("no --case given")
    if args.runs < 1:
        ap.error("-n must be at least 1")
    prefix = shlex.split(args.prefix)
    cases = [Case(name, prefix + shlex.split(cmd)) for name, cmd in args.case]
    results = run_interleaved(cases, runs=args.runs, warmup=args.warmup, seed=args.seed, timeout=args.timeout)
    print(format_table(results, baseline=args.baseline, title=args.title, subtract=args.subtract))
    for t in args.target:
        print(check_target(results, t)[1])
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(to_json(results, args.baseline), f, indent=1)
    return 0 if any(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
