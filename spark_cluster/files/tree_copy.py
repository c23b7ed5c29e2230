#!/usr/bin/env python3
"""Copy a list of files from a peer's directory into this node's, fast and
resumably: several rsync streams at once, spread over the peer's addresses
(one per rail of the fabric), each stream on its own SSH connection that it
keeps for all its files.

    tree_copy.py SOURCE_DIR DEST_DIR --from ADDR[,ADDR...] --list LISTFILE
                 [--streams N] [--ssh "SSH COMMAND"] [--progress-every S]
                 [--fallback ADDR[,ADDR...]] [--stall-s S] [--remove-list]

Runs on the receiving node, as the user who owns DEST_DIR. LISTFILE is JSON,
{"files": [{"path": "blobs/x", "size": 123}, {"path": "refs/main", "size": 40, "mtime": 1764590000},
{"path": "snapshots/r/f", "link": "../../blobs/x"}]}, in copy order; an entry
DEST_DIR already holds (a file of that size, and that modification second
where the entry names one; a link to that target) is not copied again, so a copy cut short resumes where it
stopped, file by file.

The upstream may still be receiving the same list itself (a chain: node 2
pulls from node 1 while node 1 pulls from the source). A file counts as ready
there once it lies under its own name with its full size: rsync writes into
a temporary directory and renames a file into place only when it is whole.
If the upstream makes no progress for --stall-s seconds, the copy goes on
from --fallback (the source); without one it fails.

Why these choices:
- streams: one SSH connection encrypts on one core at each end; the link
  carries several times what one core encrypts. Big files are handed out one
  per stream (the list is largest first), small ones in batches.
- rsync -W: the whole file, no delta search: on a fast link reading both
  ends to find equal blocks costs more than sending the bytes.
- --temp-dir inside DEST_DIR: the rename into place stays on one filesystem
  (atomic), and a killed copy leaves its partial files there alone, which the
  next run removes first; the tree itself never holds a half file.
- links last: a reader never sees a snapshot link whose blob is missing.

An ADDR is `user@ip`, or `user@ip#name` where the peer's host key is
recorded under its name (ssh's HostKeyAlias): every rail's address of a peer
is then checked against the one key the ssh role verified.

Prints a `progress` line (bytes, rate, ETA) every --progress-every seconds, `note {text}` for
events (a switch to the fallback), and a last `result {json}` line; exits 0
once DEST_DIR holds every entry.

Standard library only: it runs on the node's own python3.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

TEMP_DIR = ".spark-copy-tmp"
# Files at least this big travel alone; smaller ones are batched up to it.
BATCH_BYTES = 64 * 2**20
POLL_S = 1.0
# A batch whose rsync fails is tried this many times in all (a stream's
# connection may drop; the next try opens a new one).
TRIES = 3
CONTROL_PERSIST_S = 60


def load_list(path: str) -> list[dict]:
    with open(path) as handle:
        entries = json.load(handle)["files"]
    for entry in entries:
        if not isinstance(entry.get("path"), str) or entry["path"].startswith("/") or ".." in entry["path"].split("/"):
            raise SystemExit(f"tree_copy: {path}: a path must be relative and stay inside the tree, got {entry.get('path')!r}")
        if ("size" in entry) == ("link" in entry):
            raise SystemExit(f"tree_copy: {path}: {entry['path']!r} needs exactly one of 'size' (a file) or 'link'")
    return entries


def held(root: str, entry: dict) -> bool:
    """Whether the tree at `root` holds `entry` as listed."""
    path = os.path.join(root, entry["path"])
    if "link" in entry:
        return os.path.islink(path) and os.readlink(path) == entry["link"]
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    status = os.stat(path)
    return status.st_size == entry["size"] and ("mtime" not in entry or int(status.st_mtime) == entry["mtime"])


def listing_command(source_dir: str) -> str:
    """What the upstream prints of its tree: path, size and link target of each
    file and link, and the bytes in its temporary directory (its progress)."""
    quoted = shlex.quote(source_dir)
    return (f"cd {quoted} 2>/dev/null || exit 0; "
            "find . -mindepth 1 \\( -type f -o -type l \\) -printf '%P\\t%s\\t%l\\t%T@\\n'")


def parse_listing(text: str) -> tuple[dict, int]:
    """({path: (size, link target, modification second)}, bytes under the temporary directory)."""
    tree, moving = {}, 0
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        path, size, link, mtime = parts
        if path.startswith(TEMP_DIR + "/"):
            moving += int(size)
        else:
            tree[path] = (int(size), link, int(float(mtime)))
    return tree, moving


def listing_holds(tree: dict, entry: dict) -> bool:
    """Whether a tree, as parse_listing read it, holds `entry` as listed: on an
    upstream, the file is ready; on a receiver (the deploy's plan), nothing to copy."""
    found = tree.get(entry["path"])
    if found is None:
        return False
    size, link, mtime = found
    if "link" in entry:
        return link == entry["link"]
    return not link and size == entry["size"] and entry.get("mtime", mtime) == mtime


def progress_line(figures: dict) -> str:
    """12.3 of 150.0 GiB (8%), 1.21 GiB/s, ETA 1m52s"""
    gib = 2**30
    share = 100 * figures["bytes"] / figures["total"] if figures["total"] else 100
    eta = figures["eta_s"]
    eta_text = "unknown" if eta is None else (f"{eta // 60}m{eta % 60:02d}s" if eta >= 60 else f"{eta}s")
    return (f"{figures['bytes'] / gib:.1f} of {figures['total'] / gib:.1f} GiB ({share:.0f}%), "
            f"{figures['rate'] / gib:.2f} GiB/s, ETA {eta_text}")


def batches(entries: list[dict]) -> list[list[dict]]:
    """Files of BATCH_BYTES or more alone, smaller ones together up to it; links in batches of their own."""
    out, current, current_bytes = [], [], 0
    for entry in entries:
        size = entry.get("size", 0)
        if "size" in entry and size >= BATCH_BYTES:
            out.append([entry])
            continue
        if current and (current_bytes + size > BATCH_BYTES or ("link" in entry) != ("link" in current[0])):
            out.append(current)
            current, current_bytes = [], 0
        current.append(entry)
        current_bytes += size
    if current:
        out.append(current)
    return out


class Copy:
    def __init__(self, args):
        self.args = args
        self.entries = load_list(args.list)
        self.addresses = args.addresses
        self.ssh = shlex.split(args.ssh)
        self.total = sum(entry.get("size", 0) for entry in self.entries)
        self.control_dir = tempfile.mkdtemp(prefix="tree-copy-")  # 0700, the caller's own
        self.lock = threading.Lock()
        self.work: queue.Queue = queue.Queue()
        self.failed: str | None = None
        self.started = time.monotonic()
        self.bytes_at_start = 0
        self.switched = False
        self.landed: set[str] = set()  # paths seen whole: a landed file is not checked again on the next tick

    # --- SSH -------------------------------------------------------------
    def ssh_for(self, stream: str, address: str) -> tuple[list[str], str]:
        """(the ssh argv of one stream: its own connection, kept for all its
        files; the host part for rsync/ssh)."""
        host, _, alias = address.partition("#")
        alias_option = ["-o", f"HostKeyAlias={alias}"] if alias else []
        return self.ssh + alias_option + [
            "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/{stream}-%C",
            "-o", f"ControlPersist={CONTROL_PERSIST_S}"], host

    def close_connections(self) -> None:
        for name in os.listdir(self.control_dir):
            subprocess.run(self.ssh + ["-o", f"ControlPath={self.control_dir}/{name}", "-O", "exit", "unused"],
                           capture_output=True, timeout=20)
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def upstream_tree(self) -> tuple[dict, int]:
        ssh, host = self.ssh_for("list", self.addresses[0])
        done = subprocess.run(ssh + [host, listing_command(self.args.source_dir)],
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"listing {self.args.source_dir} on {self.addresses[0]} failed: "
                               f"{done.stderr.strip()[-400:]}")
        return parse_listing(done.stdout)

    # --- progress --------------------------------------------------------
    def bytes_here(self) -> int:
        """Bytes of listed files this tree holds, plus those still arriving."""
        for entry in self.entries:
            if entry["path"] not in self.landed and held(self.args.dest_dir, entry):
                self.landed.add(entry["path"])
        done = sum(entry.get("size", 0) for entry in self.entries if entry["path"] in self.landed)
        moving = 0
        temp = os.path.join(self.args.dest_dir, TEMP_DIR)
        for folder, _, names in os.walk(temp):
            for name in names:
                try:
                    moving += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass  # renamed into place meanwhile
        return done + moving

    def report(self, kind: str, **figures) -> None:
        with self.lock:
            print(kind, json.dumps(figures, sort_keys=True), flush=True)

    def say(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)

    def progress(self) -> dict:
        now, here = time.monotonic(), self.bytes_here()
        moved, elapsed = here - self.bytes_at_start, max(now - self.started, 1e-6)
        rate = moved / elapsed
        left = max(self.total - here, 0)
        return {"bytes": here, "total": self.total, "moved": moved, "seconds": round(elapsed, 1),
                "rate": round(rate), "eta_s": round(left / rate) if rate > 0 else None}

    def progress_loop(self, finished: threading.Event) -> None:
        while not finished.wait(self.args.progress_every):
            self.say("progress " + progress_line(self.progress()))

    # --- streams ---------------------------------------------------------
    def rsync(self, stream: int, batch: list[dict]) -> subprocess.CompletedProcess:
        ssh, host = self.ssh_for(f"s{stream}", self.addresses[stream % len(self.addresses)])
        temp = os.path.abspath(os.path.join(self.args.dest_dir, TEMP_DIR))
        argv = ["rsync", "-a", "-W", "--from0", "--files-from=-", f"--temp-dir={temp}",
                "-e", shlex.join(ssh),
                f"{host}:{self.args.source_dir.rstrip('/')}/", self.args.dest_dir.rstrip("/") + "/"]
        names = "".join(entry["path"] + "\0" for entry in batch)
        return subprocess.run(argv, input=names, capture_output=True, text=True)

    def stream(self, number: int) -> None:
        while True:
            batch = self.work.get()
            if batch is None:
                return
            if self.failed:
                self.work.task_done()
                continue
            for attempt in range(1, TRIES + 1):
                done = self.rsync(number, batch)
                missing = [entry["path"] for entry in batch if not held(self.args.dest_dir, entry)]
                if done.returncode == 0 and not missing:
                    break
                if attempt == TRIES:
                    self.failed = (f"rsync of {', '.join(missing[:3]) or batch[0]['path']} failed {TRIES} times "
                                   f"(exit {done.returncode}): {done.stderr.strip()[-600:]}")
            self.work.task_done()

    # --- the copy --------------------------------------------------------
    def run(self) -> int:
        dest = self.args.dest_dir
        os.makedirs(dest, exist_ok=True)
        temp = os.path.join(dest, TEMP_DIR)
        shutil.rmtree(temp, ignore_errors=True)  # what a killed run left
        os.makedirs(temp)
        self.bytes_at_start = self.bytes_here()
        files = [e for e in self.entries if "size" in e and not held(dest, e)]
        links = [e for e in self.entries if "link" in e and not held(dest, e)]
        finished = threading.Event()
        threads = [threading.Thread(target=self.stream, args=(i,), daemon=True) for i in range(self.args.streams)]
        threads.append(threading.Thread(target=self.progress_loop, args=(finished,), daemon=True))
        for thread in threads:
            thread.start()
        try:
            self.hand_out(files)
            self.work.join()
            if not self.failed and links:
                self.hand_out(links)
                self.work.join()
        except RuntimeError as error:
            self.failed = str(error)
        finally:
            for _ in range(self.args.streams):
                self.work.put(None)
            finished.set()
            self.close_connections()
        missing = [e["path"] for e in self.entries if not held(dest, e)]
        figures = self.progress()
        if not self.failed and not missing:
            shutil.rmtree(temp, ignore_errors=True)
            if self.args.remove_list:  # the deploy wrote it for this copy alone
                os.unlink(self.args.list)
        self.report("result", ok=not self.failed and not missing, files=len(self.entries),
                    copied=len(files) + len(links), streams=self.args.streams, sources=self.addresses,
                    missing=missing[:5], error=self.failed, **figures)
        return 0 if not self.failed and not missing else 1

    def hand_out(self, entries: list[dict]) -> None:
        """Queues each entry once the upstream holds it whole, in list order."""
        waiting, last_seen, last_change = list(entries), None, time.monotonic()
        while waiting and not self.failed:
            tree, moving = self.upstream_tree()
            ready = [entry for entry in waiting if listing_holds(tree, entry)]
            for batch in batches(ready):
                self.work.put(batch)
            waiting = [entry for entry in waiting if entry not in ready]
            if not waiting:
                return
            seen = (len(tree), sum(found[0] for found in tree.values()), moving)
            if seen != last_seen:
                last_seen, last_change = seen, time.monotonic()
            elif time.monotonic() - last_change > self.args.stall_s:
                self.stalled(len(waiting))
                last_seen, last_change = None, time.monotonic()
            time.sleep(POLL_S)

    def stalled(self, waiting: int) -> None:
        if self.switched or not self.args.fallback:
            raise RuntimeError(f"{self.addresses[0]} made no progress for {self.args.stall_s:g} s and still lacks "
                               f"{waiting} listed files")
        self.say(f"note {self.addresses[0]} made no progress for {self.args.stall_s:g} s: "
                 f"copying the rest from {self.args.fallback[0]}")
        self.addresses, self.switched = self.args.fallback, True


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source_dir")
    parser.add_argument("dest_dir")
    parser.add_argument("--from", dest="addresses", required=True, type=lambda s: [a for a in s.split(",") if a],
                        help="the upstream's addresses (user@ip), one per rail")
    parser.add_argument("--list", required=True, help="JSON list of the entries to copy")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--ssh", default="ssh", help="the ssh command rsync runs (options included)")
    parser.add_argument("--progress-every", type=float, default=5.0)
    parser.add_argument("--fallback", type=lambda s: [a for a in s.split(",") if a], default=[])
    parser.add_argument("--stall-s", type=float, default=300.0)
    parser.add_argument("--remove-list", action="store_true", help="remove LISTFILE once the copy ends whole")
    args = parser.parse_args(argv)
    if args.streams < 1 or not args.addresses:
        parser.error("--streams must be at least 1 and --from must name an address")
    return args


def main(argv: list[str]) -> int:
    return Copy(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
