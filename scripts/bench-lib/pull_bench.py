#!/usr/bin/env python3
"""The timed part of bench-pull.sh: interleaved rounds of cold pulls (burrow, podman, skopeo+umoci), then warm
pulls and runs; medians, ratios against the issue's targets, peak RSS of each cold pull (wait4 ru_maxrss)."""
import json, os, pwd, random, statistics, subprocess, sys, time

rounds, json_out = int(sys.argv[1]), sys.argv[2]
user, work, home = os.environ["USER_NAME"], os.environ["WORK"], os.environ["UHOME"]
prefix = ["setpriv", f"--reuid={user}", f"--regid={pwd.getpwnam(user).pw_gid}", "--init-groups", "--reset-env", "env", f"HOME={home}",
          f"USER={user}", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", f"XDG_RUNTIME_DIR={work}/xdg"]

def case(step: str, name: str) -> tuple[float, int]:
    start = time.monotonic()
    p = subprocess.Popen(prefix + ["sh", f"{work}/cases.sh", step, name], stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.monotonic() - start
    err = p.stderr.read().decode(errors="replace").strip()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench-pull: {name} failed: {err[-500:]}")
    return elapsed * 1000, usage.ru_maxrss

samples: dict[str, list[float]] = {}
rss: dict[str, list[int]] = {}
cold = ["burrow-cold", "podman-cold", "skopeo-umoci"]
for r in range(rounds):
    order = cold[:]
    random.shuffle(order)
    for name in order:
        case("prep", name)
        ms, kb = case("run", name)
        samples.setdefault(name, []).append(ms)
        rss.setdefault(name, []).append(kb)
    print(f"bench-pull: round {r + 1}/{rounds}: " + ", ".join(f"{n} {samples[n][-1]:.0f} ms" for n in cold), file=sys.stderr)
hot = ["burrow-warm", "run-image", "run-rootfs"]
for r in range(rounds * 6):
    order = hot[:]
    random.shuffle(order)
    for name in order:
        samples.setdefault(name, []).append(case("run", name)[0])

med = {n: statistics.median(v) for n, v in samples.items()}
print(f"\n{'case':<14} {'median ms':>10} {'min':>8} {'max':>8} {'n':>4} {'peak RSS MiB':>13}")
for n in cold + hot:
    v = samples[n]
    peak = f"{max(rss[n]) / 1024:.0f}" if n in rss else ""
    print(f"{n:<14} {med[n]:>10.1f} {min(v):>8.1f} {max(v):>8.1f} {len(v):>4} {peak:>13}")
ratio = med["burrow-cold"] / med["podman-cold"]
extra = med["run-image"] - med["run-rootfs"]
print()
print(f"target cold pull <= 0.7x podman: {ratio:.2f}x  {'MET' if ratio <= 0.7 else 'NOT MET'}")
print(f"target warm pull <= 50 ms:       {med['burrow-warm']:.1f} ms  {'MET' if med['burrow-warm'] <= 50 else 'NOT MET'}")
print(f"target run IMAGE <= +1 ms:       {extra:+.2f} ms  {'MET' if extra <= 1 else 'NOT MET'}")
print(f"skopeo+umoci / burrow cold:      {med['skopeo-umoci'] / med['burrow-cold']:.2f}x")
if json_out:
    with open(json_out, "w") as f:
        json.dump({"samples_ms": samples, "peak_rss_kib": rss, "medians_ms": med}, f, indent=1)
