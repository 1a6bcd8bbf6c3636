"""Run one command in a sandbox: bubblewrap (no network, the file system read-only but for
its own folder and /tmp), its own user id, and limits on memory, CPU, wall time, processes
and output. Every process it starts dies with it (its own PID namespace, then a sweep).

The CPU limit is the whole command's: the CPU time of every process it ever ran, summed by
a cpuacct cgroup the parent polls (a submission that forks busy children cannot spread its
work under a per-process limit); where that cgroup cannot be made, the process tree's times
from /proc, polled the same way; and each process's RLIMIT_CPU besides.
"""

from __future__ import annotations

import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# User ids of the sandboxed processes (root only): one per parallel job, so the process
# limit of one submission is not shared with another and a sweep finds exactly its processes.
FIRST_UID = 61000


@dataclass(frozen=True)
class Limits:
    """What one submission's check may use (README "Grading a class")."""

    memory_gb: float = 4.0  # address space of each process (RLIMIT_AS)
    cpu_s: int = 600  # CPU seconds of the whole check (cpuacct cgroup; else each process's)
    wall_s: int = 300  # the whole check, from start to end
    processes: int = 256  # processes and threads of the submission's user (RLIMIT_NPROC)
    output_mb: int = 64  # stdout and stderr together, before the check is stopped
    file_mb: int = 512  # the largest file it may write (RLIMIT_FSIZE)
    keep_kb: int = 16  # output kept: this much of its start and of its end


@dataclass
class Outcome:
    """How a sandboxed command ended."""

    returncode: int | None
    limit: str | None  # "wall limit 300 s exceeded", ...
    output: str  # its start and end, capped
    wall_s: float
    cpu_s: float
    outlived: int  # processes of its user still alive after it ended (killed then)
    sandboxed: bool  # bubblewrap was used
    peak_mb: float = 0.0  # the check's peak memory (its memory cgroup's), 0 when unknown


@functools.cache
def bwrap() -> str | None:
    """bubblewrap's path when it is installed and can create the sandbox here, else None."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = [path, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--dev", "/dev"]
    try:
        done = subprocess.run([*probe, "--proc", "/proc", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if done.returncode == 0 else None


@functools.cache
def can_drop_to(uid: int) -> bool:
    """Whether this Python (and a child of it) runs as user `uid` (not when it lives in a
    folder only root can read, e.g. a virtual environment made from /root/.pyenv)."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = (
        "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', '0']).returncode)"
    )
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]
    try:
        done = subprocess.run([*drop, sys.executable, "-c", probe], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def warn_unsandboxed() -> str:
    """What a grader is told when bubblewrap is missing."""
    return (
        "ftkit grade: bubblewrap (bwrap) is not installed or cannot create a sandbox here: "
        "submissions run with resource limits only — they can read and write your files and "
        "use the network. Install it (Debian/Ubuntu: apt-get install bubblewrap) to isolate them."
    )


def _limit(kind: int, value: int) -> None:
    soft = hard = value
    if kind == resource.RLIMIT_CPU:
        hard = value + 5  # SIGXCPU first, then SIGKILL
    resource.setrlimit(kind, (soft, hard))


CGROUPS = Path("/sys/fs/cgroup")  # cgroup v1 controllers (pids, memory), where writable


def make_cgroups(slot: int, limits: Limits) -> dict[str, Path]:
    """A pids cgroup (at most `limits.processes`) and a memory cgroup (`limits.memory_gb`,
    the kernel's OOM killer past it) for one job; those that cannot be made are left out."""
    settings = {
        "pids": {"pids.max": str(limits.processes)},
        "memory": {
            "memory.limit_in_bytes": str(int(limits.memory_gb * 2**30)),
            "memory.swappiness": "0",
        },
        "cpuacct": {},  # read, not limited: the parent stops the check past `limits.cpu_s`
    }
    made = {}
    for controller, values in settings.items():
        folder = CGROUPS / controller / f"ftkit-grade-{os.getpid()}-{slot}"
        try:
            folder.mkdir(exist_ok=True)
            for name, value in values.items():
                if name == "memory.swappiness" and not (folder / name).exists():
                    continue
                (folder / name).write_text(value)
        except OSError:
            with contextlib.suppress(OSError):
                folder.rmdir()
            continue
        made[controller] = folder
    return made


def oom_kills(folder: Path) -> int:
    """How many processes the kernel's OOM killer took in a memory cgroup."""
    try:
        text = (folder / "memory.oom_control").read_text()
    except OSError:
        return 0
    counts = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
    return int(counts.get("oom_kill", 0))


def cpu_used(folder: Path) -> float | None:
    """CPU seconds used by every process that ever ran in a cpuacct cgroup (None: unreadable)."""
    try:
        return int((folder / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        return None


def tree_cpu(root: int) -> float:
    """CPU seconds of process `root` and its descendants, with the children they have reaped
    (/proc: where no cpuacct cgroup can be made; in a PID namespace orphans stay in the tree)."""
    parents: dict[int, list[int]] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        parents.setdefault(int(fields[1]), []).append(pid)  # fields[1]: ppid
        times[pid] = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += times.get(pid, 0.0)
        todo += parents.get(pid, [])
    return total


def cgroup_sweep(folder: Path) -> int:
    """Kill every process still in the cgroup after a grace of 3 s (the PID namespace's end
    takes its processes down), remove it; how many outlived the grace."""
    pids: list[int] = []
    for _ in range(30):
        try:
            pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
        except OSError:
            return 0
        if not pids:
            break
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        with contextlib.suppress(OSError):
            folder.rmdir()
            break
        time.sleep(0.1)
    return len(pids)


def _preexec(limits: Limits, processes: int, cgroups: dict[str, Path]) -> None:
    """In the child before exec: join the cgroups, die with the parent, then the limits
    (inherited by every process it starts)."""
    for folder in cgroups.values():
        (folder / "cgroup.procs").write_text(str(os.getpid()))
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if "memory" not in cgroups:  # the fallback: address space per process
        _limit(resource.RLIMIT_AS, int(limits.memory_gb * 2**30))
    _limit(resource.RLIMIT_CPU, int(limits.cpu_s))
    _limit(resource.RLIMIT_FSIZE, int(limits.file_mb * 2**20))
    _limit(resource.RLIMIT_CORE, 0)
    _limit(resource.RLIMIT_NPROC, processes)


def command(
    argv: list[str],
    work: Path,
    *,
    uid: int | None,
    hidden: list[Path],
    use_bwrap: bool,
    readable: list[Path] = (),
) -> list[str]:
    """The command line: `argv` inside bubblewrap (when available) as user `uid` (when root);
    `hidden` folders empty, `readable` paths shown read-only (also under /tmp or a hidden one)."""
    drop = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"] if uid else []
    if not use_bwrap:
        return [*drop, *argv]
    line = [bwrap() or "bwrap", "--ro-bind", "/", "/", "--perms", "1777", "--tmpfs", "/tmp"]
    for folder in hidden:  # other submissions and their grades
        line += ["--tmpfs", str(folder)]
    for path in readable:
        line += ["--ro-bind", str(path), str(path)]
    line += ["--bind", str(work), str(work)]
    line += ["--dev", "/dev", "--proc", "/proc"]
    line += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts"]
    line += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--chdir", str(work)]
    if os.geteuid() == 0:  # else root's powers inside: remount writable, leave the cgroups
        line += ["--cap-drop", "ALL"]
    return [*line, *drop, *argv]


def processes_of(uid: int) -> list[int]:
    """Process ids of user `uid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:") and int(line.split()[1]) == uid:
                found.append(int(entry.name))
    return found


def sweep(uid: int) -> int:
    """Kill every process of user `uid`; how many there were."""
    pids = processes_of(uid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


class _Output:
    """Reads a pipe to its end: keeps its first and last `keep` bytes, counts the rest."""

    def __init__(self, stream, keep: int, cap: int, on_cap, echo=None):
        self.head, self.tail, self.total = bytearray(), bytearray(), 0
        self.keep, self.cap, self.on_cap, self.capped = keep, cap, on_cap, False
        self.echo = echo
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:
        while chunk := stream.read1(65536):
            self.total += len(chunk)
            if self.echo is not None and not self.capped:
                self.echo(chunk)
            room = self.keep - len(self.head)
            if room > 0:
                self.head += chunk[:room]
                chunk = chunk[room:]
            self.tail = (self.tail + chunk)[-self.keep :]
            if self.total > self.cap and not self.capped:
                self.capped = True
                self.on_cap()

    def text(self) -> str:
        skipped = self.total - len(self.head) - len(self.tail)
        middle = f"\n[... {skipped} bytes of output left out ...]\n" if skipped > 0 else ""
        return (bytes(self.head) + middle.encode() + bytes(self.tail)).decode("utf-8", "replace")


POLL_S = 0.2  # how often the wall clock and the check's CPU time are read


def run(
    argv: list[str],
    work: Path,
    *,
    env: dict[str, str],
    limits: Limits,
    slot: int = 0,
    hidden: list[Path] = (),
    use_bwrap: bool | None = None,
    readable: list[Path] = (),
    echo=None,
) -> Outcome:
    """Run `argv` in folder `work` (its only writable place besides an empty /tmp) under
    `limits`; `slot` picks its user id. `hidden` folders are empty inside. `echo` gets each
    chunk of its output as it comes (bytes, up to the output cap)."""
    use_bwrap = bwrap() is not None if use_bwrap is None else use_bwrap
    uid = FIRST_UID + slot if can_drop_to(FIRST_UID + slot) else None
    if uid is not None:
        sweep(uid)  # a previous job's leftovers
        for path in [work, *work.rglob("*")]:
            os.chown(path, uid, uid)
        processes = limits.processes
    else:  # the limit counts all of this user's processes: leave room for those already running
        processes = limits.processes + len(processes_of(os.getuid()))
    cgroups = make_cgroups(slot, limits) if os.geteuid() == 0 else {}
    line = command(
        argv, work, uid=uid, hidden=list(hidden), use_bwrap=use_bwrap, readable=list(readable)
    )
    start = time.monotonic()
    proc = subprocess.Popen(
        line,
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=functools.partial(_preexec, limits, processes, cgroups),
    )
    hit: list[str] = []

    def stop(reason: str) -> None:
        if not hit:
            hit.append(reason)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)

    output = _Output(
        proc.stdout,
        limits.keep_kb * 1024,
        limits.output_mb * 2**20,
        lambda: stop(f"output limit {limits.output_mb} MB exceeded"),
        echo,
    )
    ended = threading.Event()

    def watch() -> None:  # the wall clock and the whole check's CPU time
        while not ended.wait(POLL_S):
            if time.monotonic() - start > limits.wall_s:
                stop(f"wall limit {limits.wall_s:g} s exceeded")
            used = cpu_used(cgroups["cpuacct"]) if "cpuacct" in cgroups else tree_cpu(proc.pid)
            if used is not None and used > limits.cpu_s:
                stop(f"CPU limit {limits.cpu_s:g} s exceeded")

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        ended.set()
        if proc.poll() is None:
            stop("interrupted")
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    outlived = sweep(uid) if uid is not None else 0
    peak = 0.0
    with contextlib.suppress(OSError, ValueError, KeyError):
        peak = int((cgroups["memory"] / "memory.max_usage_in_bytes").read_text()) / 2**20
    if "memory" in cgroups and oom_kills(cgroups["memory"]) and not hit:
        hit.append(f"memory limit {limits.memory_gb:g} GB exceeded")
    cpu = usage.ru_utime + usage.ru_stime
    if "cpuacct" in cgroups:  # every process's, not only those waited for
        cpu = max(cpu, cpu_used(cgroups["cpuacct"]) or 0.0)
    for controller, folder in cgroups.items():
        left = cgroup_sweep(folder)
        outlived += left if controller == "pids" else 0
    if not use_bwrap or uid is None:  # no PID namespace: the process group is all there is
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    output.thread.join(timeout=10)
    code = proc.returncode
    if not hit and (code in (-signal.SIGXCPU, 128 + signal.SIGXCPU) or cpu >= limits.cpu_s):
        hit.append(f"CPU limit {limits.cpu_s:g} s exceeded")
    limit = hit[0] if hit else None
    return Outcome(code, limit, output.text(), wall, cpu, outlived, use_bwrap, round(peak))


def sandbox_env(extra: dict[str, str]) -> dict[str, str]:
    """A plain environment for the sandboxed check: the kit's settings, nothing else of ours."""
    keep = ("PATH", "LANG", "LC_ALL", "FTKIT_DATA_MIRROR", "FTKIT_OFFLINE", "PYTHONPATH")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(
        HOME="/tmp",
        FTKIT_HOME="/tmp/ftkit-home",
        MPLBACKEND="Agg",
        MPLCONFIGDIR="/tmp/matplotlib",
        PYTHONDONTWRITEBYTECODE="1",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env
