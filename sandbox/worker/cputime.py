"""CPU time charged to a sample: the CPU of every live process of its uids (their own and that of the children they
reaped), read from /proc, so a sample that spreads its work over many processes is charged for all of them. And the
time its processes waited on the run queue (schedstat): the part of a wall-clock overrun that the machine's load,
not the program, caused."""
import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rpartition(b")")[2].split()


def usage(uids=None, pids=None):
    """(cpu seconds, run-queue wait seconds or None) over the live processes owned by `uids` (or these `pids`)."""
    cpu, wait = 0.0, 0.0
    for name in (os.listdir("/proc") if pids is None else map(str, pids)):
        if not name.isdigit():
            continue
        try:
            if uids is not None and os.stat(f"/proc/{name}").st_uid not in uids:
                continue
            f = _stat_fields(name)
            # fields after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime
            # stime cutime cstime
            cpu += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
        if wait is not None:
            try:
                with open(f"/proc/{name}/schedstat", "rb") as s:
                    wait += int(s.read().split()[1]) / 1e9  # on-cpu ns, run-queue wait ns, timeslices
            except (OSError, IndexError, ValueError):
                wait = None  # this kernel does not tell
    return cpu, wait


def on_cpu(pid):
    """(CPU seconds, run-queue wait seconds or None) of one live process, to the nanosecond where schedstat says
    (a slot's judge: the share of its CPU a sample is charged is a difference of two readings, too small for clock
    ticks), else from /proc/PID/stat."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as f:
            run, wait = f.read().split()[:2]
        return int(run) / 1e9, int(wait) / 1e9
    except (OSError, ValueError):
        return usage(pids=[pid])
