"""One hop of the engine image's chain: load the stream here and pass it on.

The first receiver reads `docker save` from the source (over SSH), every hop
feeds its own `docker load` and the next receiver's relay (over SSH) with the
same bytes as they arrive, so the source sends the image once and every link
carries it once (roles/distribute/image.py plans the chain).

Run as `python3 -c LAUNCHER THIS_TEXT SPEC`: the launcher (spec "launcher")
executes this text from sys.argv[1], so a hop sends itself on to the next
node inline, nothing installed. SPEC is JSON:
  node      this hop's name, for its result line;
  source    argv whose stdout is the image (first hop), or null: read stdin;
  load      argv that loads the image here (docker load);
  ssh       argv prefix that reaches the next node;
  next      [{"node", "address"}...]: the rest of the chain, in order;
  total     the image's approximate size in bytes (0: unknown);
  progress_s  seconds between progress lines (0: none, hops after the first).

Between hops the stream is framed (4-byte big-endian length, then data; a
zero length ends it): a hop whose upstream broke sees no end mark, so it
kills its own `docker load` instead of closing it on a truncated stream, and
passes the break on. Failures of a branch are never swallowed: each hop
prints one JSON result line on stdout (they travel back up the chain) and
exits non-zero when its input, its load or anything downstream failed.
"""

import json
import os
import shlex
import struct
import subprocess
import sys
import time

CHUNK = 1 << 20
HEADER = struct.Struct(">I")
GIB = 1 << 30
RESULT_KEY = "image_relay"


def progress_line(sent, total, elapsed):
    """Bytes, rate and ETA; the total is the source's image size, an estimate of the stream's."""
    rate = sent / elapsed if elapsed > 0 else 0.0
    line = f"image relay: {sent / GIB:.2f} GiB"
    if total:
        line += f" of ~{total / GIB:.2f} GiB ({min(99, int(100 * sent / total))}%)"
    line += f", {rate / GIB:.2f} GiB/s"
    if total and rate > 0 and sent < total:
        line += f", ETA ~{(total - sent) / rate:.0f}s"
    elif total:
        line += ", ETA: past the estimate, finishing"
    return line


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def read_exactly(fd, count):
    parts, left = [], count
    while left:
        part = os.read(fd, min(left, CHUNK))
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


class Input:
    """The image's bytes: raw from the source command, or framed from the previous hop."""

    def __init__(self, spec):
        self.source = None
        if spec.get("source"):
            self.source = subprocess.Popen(spec["source"], stdout=subprocess.PIPE, bufsize=0)
            self.fd = self.source.stdout.fileno()
        else:
            self.fd = sys.stdin.fileno()
        self.error = None

    def chunks(self):
        """Each chunk in turn; self.error says afterwards whether the stream ended complete."""
        if self.source is not None:
            while True:
                data = os.read(self.fd, CHUNK)
                if not data:
                    break
                yield data
            status = self.source.wait()
            if status != 0:
                self.error = f"the source's docker save ended with status {status}"
            return
        while True:
            header = read_exactly(self.fd, HEADER.size)
            if header is None:
                self.error = "the stream from the previous hop broke off before its end"
                return
            (length,) = HEADER.unpack(header)
            if length == 0:
                return
            data = read_exactly(self.fd, length)
            if data is None:
                self.error = "the stream from the previous hop broke off before its end"
                return
            yield data


class Sink:
    def __init__(self, what, argv, framed):
        self.what, self.framed, self.stopped, self.error = what, framed, None, None
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, bufsize=0)
        self.fd = self.process.stdin.fileno()

    def write(self, data):
        if self.stopped:
            return
        try:
            if self.framed:
                write_all(self.fd, HEADER.pack(len(data)))
            write_all(self.fd, data)
        except OSError as error:
            self.stopped = error.strerror or str(error)

    def finish(self, complete):
        """Close a complete stream (with its end mark when framed); on a broken
        one, stop a local load outright and leave a framed peer without the end
        mark. True when the sink took it all and ended well."""
        try:
            if complete and self.framed and not self.stopped:
                write_all(self.fd, HEADER.pack(0))
        except OSError as error:
            self.stopped = error.strerror or str(error)
        if not complete and not self.framed:
            self.process.kill()
        try:
            self.process.stdin.close()
        except OSError:
            pass
        status = self.process.wait()
        if status != 0:
            self.error = f"{self.what} ended with status {status}"
            if self.stopped:
                self.error += f" (it stopped reading: {self.stopped})"
        elif self.stopped:
            self.error = f"{self.what} stopped reading ({self.stopped})"
        return self.error is None


def forward_argv(spec):
    """The ssh command that starts the rest of the chain on the next node."""
    following = spec["next"][0]
    rest = dict(spec, node=following["node"], source=None, next=spec["next"][1:], progress_s=0)
    remote = shlex.join(["python3", "-c", spec["launcher"], sys.argv[1], json.dumps(rest)])
    return [*spec["ssh"], following["address"], remote]


def result(spec, loaded, sent, seconds, errors):
    line = {RESULT_KEY: "result", "node": spec["node"], "loaded": loaded, "bytes": sent,
            "seconds": round(seconds, 3), "error": "; ".join(errors)}
    print(json.dumps(line, sort_keys=True), flush=True)


def main(spec):
    started = time.monotonic()
    source = Input(spec)
    load = Sink("docker load", spec["load"], framed=False)
    onward = Sink(f"the relay to {spec['next'][0]['node']}", forward_argv(spec), framed=True) if spec["next"] else None
    sinks = [sink for sink in (load, onward) if sink]
    sent, shown = 0, started
    for data in source.chunks():
        for sink in sinks:
            sink.write(data)
        sent += len(data)
        now = time.monotonic()
        if spec.get("progress_s") and now - shown >= spec["progress_s"]:
            print(progress_line(sent, spec.get("total") or 0, now - started), flush=True)
            shown = now
        if all(sink.stopped for sink in sinks):
            break  # nobody is listening any more: stop reading
    complete = source.error is None and sent > 0 and any(not sink.stopped for sink in sinks)
    if source.error is None and sent == 0:
        source.error = "the stream was empty"
    if source.source is not None and source.source.poll() is None:
        source.source.kill()
        source.source.wait()
    loaded = load.finish(complete)
    forwarded = onward.finish(complete) if onward else True
    errors = [error for error in (source.error, load.error, onward.error if onward else None) if error]
    result(spec, loaded, sent, time.monotonic() - started, errors)
    return 0 if loaded and forwarded and not source.error else 1


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[2])))
