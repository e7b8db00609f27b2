"""What a sample leaves behind, found and removed: its processes (by uid), its System V IPC objects and POSIX shared
memory, its files (a tree of any depth); and the check that the container is back to its baseline afterwards.

Nothing here may raise into the job loop: the worker treats any failure as "not back to baseline" and retires the
container (the host replaces it before it takes another sample).
"""
import os
import stat

SYSVIPC = {"shm": (1, 7, 10), "msg": (1, 7, 9), "sem": (1, 4, 6)}  # /proc/sysvipc/KIND: columns of (id, uid, cuid)
IPC_RMID = 0
POSIX_IPC_DIRS = ("/dev/shm", "/dev/mqueue")
SHMEM_SLACK = 32 * 2**20  # bytes of shared memory (tmpfs, SysV) the container may hold beyond what is accounted for


def uid_pids(uids):
    """[(pid, uid)] of the live (not zombie) processes owned by any of `uids`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            uid = os.stat(f"/proc/{name}").st_uid
            if uid not in uids:
                continue
            with open(f"/proc/{name}/stat", "rb") as f:
                state = f.read().rpartition(b")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if state != b"Z":
            found.append((int(name), uid))
    return found


def ipc_objects(uids=None):
    """[(kind, id, uid, cuid, size)] of the System V IPC objects in this IPC namespace (owned or created by
    `uids`)."""
    found = []
    for kind, (col_id, col_uid, col_cuid) in SYSVIPC.items():
        try:
            with open(f"/proc/sysvipc/{kind}") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            try:
                ident, uid, cuid = int(cols[col_id]), int(cols[col_uid]), int(cols[col_cuid])
                size = int(cols[3]) if kind == "shm" else 0
            except (IndexError, ValueError):
                continue
            if uids is None or uid in uids or cuid in uids:
                found.append((kind, ident, uid, cuid, size))
    return found


def posix_ipc_files(uids):
    found = []
    for d in POSIX_IPC_DIRS:
        try:
            entries = os.listdir(d)
        except OSError:
            continue
        for name in entries:
            try:
                if os.lstat(os.path.join(d, name)).st_uid in uids:
                    found.append(os.path.join(d, name))
            except OSError:
                pass
    return found


def remove_ipc_of(uid, libc):
    """Runs under `uid` (a sweep helper): IPC_RMID every System V object it owns, unlink its POSIX shm/mqueue files."""
    for kind, ident, _, _, _ in ipc_objects({uid}):
        if kind == "shm":
            libc.shmctl(ident, IPC_RMID, None)
        elif kind == "msg":
            libc.msgctl(ident, IPC_RMID, None)
        else:
            libc.semctl(ident, 0, IPC_RMID)
    for path in posix_ipc_files({uid}):
        try:
            os.unlink(path)
        except OSError:
            pass


def empty_dir(root):
    """Removes everything inside `root`, however deep, without recursion and without long paths: one directory
    descriptor open at a time (openat/unlinkat), the names still to visit kept in lists, one per level. Nothing of
    the sample runs any more, so nothing moves under it."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    path = []  # names of the directories from root down to where fd is
    try:
        todo = [_unlink_files(fd)]  # per level: the sub-directories not yet removed
        while True:
            if todo[-1]:
                name = todo[-1].pop()
                try:
                    child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                except NotADirectoryError:
                    os.unlink(name, dir_fd=fd)
                    continue
                os.close(fd)
                fd = child
                path.append(name)
                todo.append(_unlink_files(fd))
                continue
            todo.pop()
            if not path:
                return  # root itself is empty now
            parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = parent
            os.rmdir(path.pop(), dir_fd=fd)
    finally:
        os.close(fd)


def _unlink_files(fd):
    """Unlinks every non-directory in the directory `fd`; returns the names of its sub-directories."""
    try:
        os.chmod(fd, stat.S_IRWXU)  # a sample may have made it mode 000 (the worker can: FOWNER)
    except OSError:
        pass
    dirs = []
    with os.scandir(fd) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                dirs.append(entry.name)
            else:
                try:
                    os.unlink(entry.name, dir_fd=fd)
                except FileNotFoundError:
                    pass
    return dirs


def tmpfs_used(path):
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def cgroup_shmem():
    """Bytes of shared memory (tmpfs files, System V segments) charged to this container's memory cgroup, or None
    where no cgroup tells (cgroup v1: total_shmem; v2: shmem)."""
    for path, key in (("/sys/fs/cgroup/memory.stat", "shmem"), ("/sys/fs/cgroup/memory/memory.stat", "total_shmem")):
        try:
            with open(path) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v)
        except OSError:
            continue
    return None


def read_files(root, paths, cap):
    """{path: base64 of its first `cap` bytes} of the regular files at these paths under `root` (a plain run's
    fetch_files), read before the work dir is emptied. Each component is opened without following links and the
    last one without blocking, so a link to another slot's files or a FIFO reads nothing; what is not a regular file
    inside `root` is left out."""
    import base64

    found = {}
    for path in paths:
        parts = [p for p in path.split("/") if p not in ("", ".")]
        if not parts or ".." in parts or path.startswith("/"):
            continue
        fd = None
        try:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            for name in parts[:-1]:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = child
            child = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
            os.close(fd)
            fd = child
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            data = os.read(fd, cap)
            found[path] = base64.b64encode(data).decode()
        except OSError:
            continue
        finally:
            if fd is not None:
                os.close(fd)
    return found
