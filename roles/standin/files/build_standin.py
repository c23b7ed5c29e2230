#!/usr/bin/python3
"""Build the lab's stand-in engine image from this node's own python3.

The lab cannot pull images, so there is no base image: the root filesystem is
the python3 binary that runs this script, the libraries `ldd` lists for it and
for the stdlib's extension modules, the dynamic loader, the stdlib (without
tests, GUI and packaging parts), the merged-usr links, and the stand-in
sources under /standin. It is streamed straight into `docker import`, so the
node never holds a second copy on disk (lab VMs have 1.5 GB of memory).

    build_standin.py --tag spark-standin:<hash> --source DIR     # docker import
    build_standin.py --output rootfs.tar --source DIR            # tarball only
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import sysconfig
import tarfile

# Stdlib parts no engine stand-in imports: tests, GUI, packaging, build files.
EXCLUDED_DIRS = {
    "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip",
    "lib2to3", "pydoc_data", "site-packages", "dist-packages", "venv", "__phello__",
    "distutils", "unittest",
}
EXCLUDED_DIR_PREFIXES = ("config-",)  # static libpython and Makefiles
# Extension modules that are tests or pull in large libraries nothing here uses.
EXCLUDED_EXTENSIONS = re.compile(
    r"^(_tkinter|_test|_ctypes_test|xxlimited|xxsubtype|_xxtestfuzz|_dbm|_gdbm|_sqlite3|readline|_curses|nis|_crypt)"
)
MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
ENTRYPOINT = '["python3","/standin/server.py"]'
_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x[0-9a-f]+\)")


def stdlib_files(stdlib: str):
    for directory, subdirs, names in os.walk(stdlib):
        subdirs[:] = sorted(
            d for d in subdirs if d not in EXCLUDED_DIRS and not d.startswith(EXCLUDED_DIR_PREFIXES)
        )
        in_dynload = os.path.basename(directory) == "lib-dynload"
        for name in sorted(names):
            if name.endswith((".opt-1.pyc", ".opt-2.pyc")):
                continue
            if in_dynload and EXCLUDED_EXTENSIONS.match(name):
                continue
            path = os.path.join(directory, name)
            if os.path.isfile(path):  # also drops dangling links (e.g. into /etc/python3.x)
                yield path


def shared_libraries(binaries) -> list[str]:
    """Every library path ldd prints for the binaries, the loader included."""
    found = set()
    for binary in binaries:
        result = subprocess.run(["ldd", binary], capture_output=True, text=True)
        if result.returncode != 0:  # "not a dynamic executable": nothing to add
            continue
        for line in result.stdout.splitlines():
            if "not found" in line:
                raise SystemExit(f"build_standin: {binary} needs a library that is missing: {line.strip()}")
            match = _LDD_PATH.search(line)
            if match:
                found.add(match.group(1))
    return sorted(found)


def archive_name(path: str) -> str:
    """Where a file goes in the image: its directory resolved (merged usr),
    its own name kept (library links like libz.so.1 stay findable)."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path)).lstrip("/")


class RootFs:
    def __init__(self, tar: tarfile.TarFile):
        self.tar = tar
        self.seen: set[str] = set()
        self.size = 0

    def directory(self, name: str, mode: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            partial = "/".join(parts[:depth])
            if partial in self.seen:
                continue
            info = tarfile.TarInfo(partial)
            info.type = tarfile.DIRTYPE
            info.mode = mode if depth == len(parts) else 0o755
            self.tar.addfile(info)
            self.seen.add(partial)

    def symlink(self, name: str, target: str) -> None:
        if name in self.seen:
            return
        info = tarfile.TarInfo(name)
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        self.tar.addfile(info)
        self.seen.add(name)

    def file(self, source: str, name: str | None = None, mode: int | None = None) -> None:
        name = name or archive_name(source)
        if name in self.seen:
            return
        self.directory(os.path.dirname(name))
        with open(source, "rb") as handle:  # dereferences links
            data = handle.read()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode if mode is not None else (os.stat(source).st_mode & 0o777)
        self.tar.addfile(info, io.BytesIO(data))
        self.seen.add(name)
        self.size += len(data)


def write_rootfs(tar: tarfile.TarFile, source_dir: str) -> int:
    root = RootFs(tar)
    # Merged-usr links first, so that /lib64/ld-linux-*.so.2 (the loader
    # path compiled into python3) resolves inside the image.
    for name in MERGED_USR_LINKS:
        path = "/" + name
        if os.path.islink(path):
            root.symlink(name, os.readlink(path))
    for name, mode in (("tmp", 0o1777), ("root", 0o700), ("etc", 0o755), ("proc", 0o555),
                       ("sys", 0o555), ("dev", 0o755), ("standin", 0o755)):
        root.directory(name, mode)

    python = os.path.realpath(sys.executable)
    root.file(python)
    # The image's ENTRYPOINT calls `python3`.
    bin_dir = os.path.dirname(archive_name(python))
    if os.path.basename(python) != "python3":
        root.symlink(f"{bin_dir}/python3", os.path.basename(python))

    stdlib = sysconfig.get_path("stdlib")
    modules = list(stdlib_files(stdlib))
    platstdlib = sysconfig.get_path("platstdlib")
    if os.path.realpath(platstdlib) != os.path.realpath(stdlib):
        modules += list(stdlib_files(platstdlib))
    for path in modules:
        root.file(path)

    extensions = [path for path in modules if path.endswith(".so")]
    for library in shared_libraries([python, *extensions]):
        root.file(library)

    for name in sorted(os.listdir(source_dir)):
        path = os.path.join(source_dir, name)
        if name.endswith(".py") and os.path.isfile(path):
            root.file(path, f"standin/{name}", 0o644)
    return root.size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="directory holding server.py and report.py")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--tag", help="image to create with docker import")
    target.add_argument("--output", help="write the root filesystem tarball here instead")
    args = parser.parse_args()
    if not os.path.isfile(os.path.join(args.source, "server.py")):
        raise SystemExit(f"build_standin: no server.py in {args.source}")

    if args.output:
        with tarfile.open(args.output, "w") as tar:
            size = write_rootfs(tar, args.source)
        print(f"build_standin: wrote {args.output} ({size / 1e6:.1f} MB of files)")
        return 0

    command = [
        "docker", "import",
        "--change", f"ENTRYPOINT {ENTRYPOINT}",
        "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin",
        "--change", 'LABEL org.opencontainers.image.description="spark-cluster lab stand-in engine"',
        "--message", "spark-cluster stand-in engine, built from the node's python3",
        "-", args.tag,
    ]
    importer = subprocess.Popen(command, stdin=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=importer.stdin, mode="w|") as tar:
            size = write_rootfs(tar, args.source)
    finally:
        importer.stdin.close()
    if importer.wait() != 0:
        raise SystemExit(f"build_standin: docker import {args.tag} failed")
    print(f"build_standin: imported {args.tag} ({size / 1e6:.1f} MB of files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
