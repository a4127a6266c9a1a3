"""Time `run` of /bin/true in one busybox bundle: kapal-runtime, runc, crun, and kapal's library API.

Every runtime gets the same bundle, the same config.json (`kapal-runtime spec` with terminal off and
args /bin/true), its own state root in a temp dir, and /dev/null for stdio. Rounds are interleaved and
the order rotates each round, so no runtime always follows the same one (a cgroup migration is cheaper
right after another one). Warm-up rounds are not counted.

"kapal library" is `kapal.runtime.container.run()` called in a long-lived Python process that has
already imported everything (the way the engine starts containers); its time is the request/reply
round trip over a pipe, which adds ~0.1 ms.

Run through ./run (it makes a private mount namespace without the hybrid cgroup2 mount crun refuses).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv" / "bin"

LIBRARY_SERVER = r"""
import os, sys
from kapal.runtime import container
root, bundle = sys.argv[1], sys.argv[2]
null = os.open("/dev/null", os.O_RDWR)
for line in sys.stdin:
    cid = line.strip()
    code = container.run(root, cid, bundle, stdio=(null, null, null))
    sys.stdout.write(f"{code}\n")
    sys.stdout.flush()
"""


def make_bundle(directory: Path) -> Path:
    bundle = directory / "bundle"
    bundle.mkdir()
    subprocess.run([str(VENV / "kapal"), "rootfs", "busybox", str(bundle / "rootfs")], check=True)
    subprocess.run([str(VENV / "kapal-runtime"), "spec", "--bundle", str(bundle)], check=True)
    import json

    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    return bundle


class Cli:
    def __init__(self, name: str, argv: list[str], root: Path, bundle: Path) -> None:
        self.name = name
        self.argv = argv
        self.root = root
        self.bundle = bundle

    def run(self, cid: str) -> float:
        cmd = [*self.argv, "--root", str(self.root), "run", "--bundle", str(self.bundle), cid]
        t = time.perf_counter()
        result = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t
        if result.returncode != 0:
            raise SystemExit(f"{self.name} run failed ({result.returncode}): {result.stderr.decode().strip()}")
        return elapsed

    def close(self) -> None:
        pass


class Library:
    name = "kapal library (warm fork)"

    def __init__(self, root: Path, bundle: Path) -> None:
        self.proc = subprocess.Popen(
            [str(VENV / "python"), "-c", LIBRARY_SERVER, str(root), str(bundle)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, cid: str) -> float:
        t = time.perf_counter()
        self.proc.stdin.write(cid + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        elapsed = time.perf_counter() - t
        if reply.strip() != "0":
            raise SystemExit(f"library run failed: {reply!r}")
        return elapsed

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--runs", type=int, default=15, help="counted rounds (default 15)")
    parser.add_argument("-w", "--warmup", type=int, default=5, help="warm-up rounds (default 5)")
    args = parser.parse_args()

    missing = [tool for tool in ("runc", "crun") if shutil.which(tool) is None]
    if missing:
        print(f"runtime_start: {', '.join(missing)} not installed (make deps installs them)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="kapal-bench-rt-") as tmp:
        tmp_path = Path(tmp)
        bundle = make_bundle(tmp_path)
        runners = [
            Cli("kapal-runtime", [str(VENV / "kapal-runtime")], tmp_path / "kapal", bundle),
            Cli("runc", ["runc"], tmp_path / "runc", bundle),
            Cli("crun", ["crun"], tmp_path / "crun", bundle),
            Library(tmp_path / "kapal-lib", bundle),
        ]
        times: dict[str, list[float]] = {r.name: [] for r in runners}
        try:
            for i in range(args.warmup + args.runs):
                shift = i % len(runners)
                for runner in runners[shift:] + runners[:shift]:
                    elapsed = runner.run(f"b{os.getpid()}-{i}")
                    if i >= args.warmup:
                        times[runner.name].append(elapsed * 1000)
        finally:
            for runner in runners:
                runner.close()

    med = {name: statistics.median(v) for name, v in times.items()}
    print(f"runtime_start: run /bin/true in a busybox bundle; {args.runs} interleaved rounds "
          f"after {args.warmup} warm-up rounds; wall time in ms")
    print(f"  {'runtime':28s} {'median':>8s} {'p25':>8s} {'min':>8s}")
    for name, values in times.items():
        p25 = statistics.quantiles(values, n=4)[0] if len(values) > 1 else values[0]
        print(f"  {name:28s} {med[name]:8.1f} {p25:8.1f} {min(values):8.1f}")
    lib = "kapal library (warm fork)"
    print("ratios (median / median):")
    print(f"  kapal-runtime / runc = {med['kapal-runtime'] / med['runc']:.2f}")
    print(f"  kapal-runtime / crun = {med['kapal-runtime'] / med['crun']:.2f}")
    print(f"  library / runc       = {med[lib] / med['runc']:.2f}")
    print(f"  library / crun       = {med[lib] / med['crun']:.2f}")
    ok = med["kapal-runtime"] <= med["runc"]
    print(f"acceptance: kapal-runtime median <= runc median: {'yes' if ok else 'NO'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
