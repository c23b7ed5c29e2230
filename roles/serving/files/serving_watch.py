#!/usr/bin/env python3
"""spark-cluster's serving watcher: judges the engine by the tokens it
generates, never by /health, and restarts engines so the cluster reassembles.

Installed by roles/serving as /usr/local/lib/spark-cluster/serving_watch.py,
with its settings in /etc/spark-cluster/watch.json (no secret there: the API
key, if any, is read from the 0600 serving.env). Subcommands:

  run       the watcher (spark-serving-watch.service): every interval_s it
            observes this node, asks decide() what to do and does it;
            it also serves its view on http://CONTROL_IP:state_port/state
            (QSFP side only) for the other nodes' watchers;
  prestart  ExecStartPre of spark-serving.service: drops the page cache and
            refuses to start an engine that would not find the memory its
            profile claims (one journal line naming the node and both figures);
  status    one JSON line for the deploy's readiness wait: ready or not, the
            engine's phase from its log, the memory it found at launch;
  logtail   the last lines of the engine's log;
  report    one JSON object for `spark-cluster status`: this node's serving
            state (serving, starting, stopped...), since when, engine, model,
            image and image id, role, and on the head its API's /health;
  smoke     on the head, for `spark-cluster smoke`: one real chat completion,
            then tokens/s single-stream and at a small concurrency (JSON).

Why a watcher at all: the members of a multi-node engine wait for each other.
A vLLM worker whose head died loops on the dead head's TCPStore; a head
whose worker died hangs in NCCL while /health still answers 200. systemd's
Restart=always only sees a process that exits, so:
- the head probes a one-token chat completion (a generation counter that
  moved since the last look counts as alive: a busy engine may queue the
  probe); after it once answered, fail_after failures in a row restart it;
  one that never answers within start_timeout_s is restarted too;
- a worker asks the head's watcher which engine the head runs (its start
  time): when that engine was started well after the worker's own
  (rejoin_grace_s), the worker's engine joined a head that is gone, so it is
  restarted and rejoins the new one;
- every restart is spaced by an exponential backoff and capped per hour, and
  each action is one journal line naming its cause;
- nothing is restarted while the unit file on disk is newer than what systemd
  loaded (NeedDaemonReload): a deploy is rewriting it and restarts the engine
  itself once it has reloaded; a restart now would run the old unit.

decide() is the whole policy: observed state and memory in, action out, no
I/O. Standard library only, Python 3.8: it runs on every node's own python3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONFIG_PATH = "/etc/spark-cluster/watch.json"
# Written by `prestart` for `status`: the memory the engine found at launch.
LAUNCH_PATH = "/run/spark-cluster/launch.json"
GIB = 1024 ** 3
# A probe after the worker's engine started by this much reflects the cluster
# that includes it (a head that lost a worker fails its next request).
SETTLE_S = 15.0
# Words a probe asks for: one token is enough to prove generation.
PROBE_PROMPT = "Say OK."

# --- phases from the engine's log --------------------------------------------
# (substring, phase), searched from the newest line back, case-insensitive:
# the first line that matches names the phase: the engines' own log words, as
# vLLM 0.10 to 0.33 and SGLang 0.5 print them.
PHASES = (
    ("The server is fired up and ready to roll", "ready"),
    ("Application startup complete", "API up"),
    ("Starting vLLM server on", "starting the API server"),
    ("Starting vLLM API server", "starting the API server"),
    ("init engine (profile, create kv cache, warmup model) took", "warming up"),
    ("CUDA graph end", "CUDA graphs captured"),
    ("Graph capturing finished", "CUDA graphs captured"),
    ("Capturing CUDA graph", "capturing CUDA graphs"),
    ("CUDA graph begin", "capturing CUDA graphs"),
    ("GPU KV cache size", "sizing the KV cache"),
    ("Available KV cache memory", "sizing the KV cache"),
    ("Memory pool end", "sizing the KV cache"),
    ("torch.compile took", "compiled (torch.compile)"),
    ("torch.compile takes", "compiled (torch.compile)"),
    ("Compiling a graph", "compiling (torch.compile)"),
    ("Dynamo bytecode transform", "compiling (torch.compile)"),
    ("autotun", "autotuning kernels"),
    ("Loading weights took", "weights loaded"),
    ("Model loading took", "weights loaded"),
    ("Load weight end", "weights loaded"),
    ("Loading safetensors checkpoint shards", "loading weights"),
    ("Load weight begin", "loading weights"),
)
ERROR_WORDS = ("Traceback (most recent call last)", "Error:", "ERROR")


def engine_phase(lines):
    """The engine's current phase from the last lines of its log ("" when
    none is recognised); an error line after the last phase is shown instead."""
    for line in reversed(lines):
        lowered = line.lower()
        for words, phase in PHASES:
            if words.lower() in lowered:
                return phase
        if any(words in line for words in ERROR_WORDS):
            return "error: " + line.strip()[-160:]
    return ""


# --- memory ------------------------------------------------------------------

def meminfo_bytes(text):
    """/proc/meminfo's values in bytes, by name."""
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            values[name.strip()] = int(fields[0]) * (1024 if fields[1:2] == ["kB"] else 1)
    return values


def memory_verdict(meminfo_text, fraction, setting, node):
    """(ok, report, line): whether the engine finds the memory its profile
    claims (`fraction` of the node's memory, from `setting`), after the page
    cache was dropped. On unified memory the GPU's share is the node's RAM."""
    values = meminfo_bytes(meminfo_text)
    total, free = values.get("MemTotal"), values.get("MemAvailable")
    if not total or free is None:
        return False, {}, f"spark-serving on {node}: /proc/meminfo has no MemTotal/MemAvailable; refusing to start"
    need = fraction * total
    report = {"node": node, "free_gib": round(free / GIB, 1), "total_gib": round(total / GIB, 1),
              "need_gib": round(need / GIB, 1), "setting": setting, "fraction": fraction}
    if free < need:
        return False, report, (
            f"spark-serving on {node}: free memory {free / GIB:.1f} GiB is below the {need / GIB:.1f} GiB "
            f"the profile claims ({setting} {fraction} of {total / GIB:.1f} GiB); refusing to start. "
            "Stop what holds it (a leaked container: docker ps -a; a copy's page cache is already dropped) "
            f"or lower {setting}")
    return True, report, (
        f"spark-serving on {node}: free memory {free / GIB:.1f} of {total / GIB:.1f} GiB, "
        f"the profile claims {need / GIB:.1f} GiB ({setting} {fraction}): starting")


# --- the policy ----------------------------------------------------------------

NONE, RESTART, HOLD = "none", "restart", "hold"


def fresh_memory():
    return {"engine_started_at": None, "answered": False, "failures": 0, "tokens": None,
            "head_seen": None, "restarts": [], "last_ok_at": None, "note": ""}


def restart_gate(memory, now, config):
    """None when a restart may happen now, else why not (backoff or the hourly cap)."""
    recent = [at for at in memory["restarts"] if now - at < 3600]
    if len(recent) >= config["max_restarts_per_hour"]:
        return HOLD, (f"{len(recent)} restarts in the last hour (max_restarts_per_hour); "
                      "holding: once the cause is fixed, `pyinfra INVENTORY restart.py` restarts the cluster")
    if recent:
        wait = min(config["backoff_s"] * 2 ** (len(recent) - 1), config["backoff_max_s"])
        if now - recent[-1] < wait:
            return NONE, f"backoff: next restart allowed {wait - (now - recent[-1]):.0f}s from now"
    return None


def _restart(memory, now, config, cause):
    gate = restart_gate(memory, now, config)
    if gate is not None:
        return gate[0], f"{cause}; {gate[1]}", memory
    memory["restarts"] = [at for at in memory["restarts"] if now - at < 3600] + [now]
    return RESTART, cause, memory


def decide(config, observed, memory, now):
    """(action, reason, memory'): action is "none", "restart" or "hold".

    observed: unit_active (systemd wants the engine running), unit_changing
    (its file is newer than what systemd loaded: a deploy is mid-way), engine_started_at
    (this node's engine container, None when none runs); on the head probe_ok
    (a completion answered) and tokens (the engine's generation counter, None
    when it exports none); on a worker head (the head's watcher view, None
    when unreachable): head["engine_started_at"] as the head's clock reads it
    (the engine's identity, exact) and head["engine_started_local"], the same
    moved onto this node's clock (approximate: for comparing with its own).
    """
    memory = dict(memory)
    started = observed.get("engine_started_at")
    if not observed.get("unit_active"):
        memory.update(engine_started_at=None, answered=False, failures=0, head_seen=None)
        return NONE, "serving is stopped (systemd): nothing to watch", memory
    if observed.get("unit_changing"):
        return NONE, "a deploy is rewriting the unit (systemd has not reloaded it): the deploy restarts it", memory
    if started is None:
        return NONE, "no engine container: systemd starts it (Restart=always)", memory
    if memory.get("engine_started_at") != started:
        memory.update(engine_started_at=started, answered=False, failures=0, tokens=None,
                      head_seen=None, last_ok_at=None)
    if config["role"] == "head":
        return _decide_head(config, observed, memory, now, started)
    return _decide_worker(config, observed, memory, now, started)


def _decide_head(config, observed, memory, now, started):
    tokens = observed.get("tokens")
    moved = tokens is not None and memory.get("tokens") is not None and tokens > memory["tokens"]
    memory["tokens"] = tokens
    if observed.get("probe_ok") or moved:
        memory.update(answered=True, failures=0, last_ok_at=now)
        return NONE, "generating" if moved else "answering", memory
    if not memory["answered"]:
        if now - started > config["start_timeout_s"]:
            return _restart(memory, now, config,
                            f"no completion {now - started:.0f}s after the engine started (start_timeout_s "
                            f"{config['start_timeout_s']}): restarting the head, the workers follow")
        return NONE, f"starting ({now - started:.0f}s)", memory
    memory["failures"] += 1
    if memory["failures"] >= config["fail_after"]:
        return _restart(memory, now, config,
                        f"no tokens in {memory['failures']} probes in a row after it had answered "
                        "(engine wedged, or a worker left): restarting the head, the workers follow")
    return NONE, f"probe failed ({memory['failures']}/{config['fail_after']})", memory


def _decide_worker(config, observed, memory, now, started):
    head = observed.get("head")
    identity = head.get("engine_started_at") if head else None
    if identity is None:
        return NONE, "head engine not seen (down, starting or unreachable): waiting", memory
    seen = memory.get("head_seen")
    if seen is None or identity == seen:
        memory["head_seen"] = identity
        return NONE, "head engine seen", memory
    head_started = head.get("engine_started_local", identity)
    if head_started - started <= config["rejoin_grace_s"]:
        # Head and worker (re)started together (a deploy): this engine joins the new head.
        memory["head_seen"] = identity
        return NONE, "head engine restarted with this one", memory
    return _restart(memory, now, config,
                    f"the head's engine restarted ({head_started - started:.0f}s after this worker's); "
                    "this one still waits on the old head: restarting it to rejoin")


# --- observing the node ---------------------------------------------------------

def load_config(path=CONFIG_PATH):
    with open(path) as handle:
        return json.load(handle)


def env_value(path, name):
    """A variable from a docker env file (NAME=value lines), or None."""
    if not name:
        return None
    try:
        with open(path) as handle:
            for line in handle:
                key, sep, value = line.rstrip("\n").partition("=")
                if sep and key.strip() == name:
                    return value
    except OSError:
        return None
    return None


def parse_docker_time(text):
    """Epoch seconds of docker's RFC 3339 time (nanoseconds, Z), or None."""
    text = text.strip()
    if not text or text.startswith("0001-"):
        return None
    main, _, fraction = text.rstrip("Z").partition(".")
    try:
        whole = time.mktime(time.strptime(main[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return None
    digits = "".join(ch for ch in fraction if ch.isdigit())
    return whole + (float("0." + digits) if digits else 0.0)


def run(argv, timeout=30):
    try:
        result = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True, timeout=timeout)
        return result.returncode, result.stdout
    except (OSError, subprocess.TimeoutExpired) as error:
        return 1, str(error)


def engine_started_at(config):
    code, out = run(["docker", "inspect", "-f", "{{.State.Running}} {{.State.StartedAt}}", config["container"]])
    running, _, when = out.strip().partition(" ")
    return parse_docker_time(when) if code == 0 and running == "true" else None


def unit_active(config):
    code, out = run(["systemctl", "is-active", config["unit"]])
    return out.strip() in ("active", "activating", "reloading")


def unit_changing(config):
    """The unit's file changed on disk since systemd loaded it: a deploy is writing it."""
    code, out = run(["systemctl", "show", "-p", "NeedDaemonReload", "--value", config["unit"]])
    return code == 0 and out.strip() == "yes"


def log_lines(config, count=200):
    code, out = run(["docker", "logs", "--tail", str(count), config["container"]])
    return out.splitlines() if code == 0 else []


def _request(url, body=None, key=None, timeout=10.0):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.status, response.read()


def probe_completion(config, key):
    """(ok, detail): a chat completion of one token from the head's API."""
    body = {"model": config["served_model_name"], "max_tokens": 1, "temperature": 0,
            "messages": [{"role": "user", "content": PROBE_PROMPT}]}
    started = time.monotonic()
    try:
        status, data = _request(config["api_url"] + "/v1/chat/completions", body, key, config["probe_timeout_s"])
        answer = json.loads(data.decode() or "{}")
        tokens = (answer.get("usage") or {}).get("completion_tokens")
        if status == 200 and answer.get("choices"):
            return True, f"a completion in {time.monotonic() - started:.1f}s ({tokens} token(s))"
        return False, f"HTTP {status} without choices"
    except urllib.error.HTTPError as error:
        return False, f"HTTP {error.code}"
    except (OSError, ValueError) as error:
        return False, f"no answer ({error.__class__.__name__}: {error})"


def generation_tokens(config):
    """The engine's generation counter from /metrics, or None (none exported)."""
    try:
        _, data = _request(config["api_url"] + "/metrics", timeout=5)
    except (OSError, ValueError):
        return None
    return metrics_counter(data.decode(errors="replace"), config.get("tokens_metric", ""))


def metrics_counter(text, name):
    """The sum of a Prometheus counter's samples (all label sets), or None."""
    if not name:
        return None
    total, found = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " "):
            try:
                total += float(line.rsplit(None, 1)[1])
                found = True
            except (IndexError, ValueError):
                continue
    return total if found else None


def head_view(config):
    """The head watcher's /state (None when unreachable), with its times also
    moved onto this node's clock: nodes' clocks may differ by minutes."""
    try:
        asked = time.time()
        _, data = _request(config["head_state_url"], timeout=5)
        view = json.loads(data.decode())
    except (OSError, ValueError):
        return None
    offset = (asked + time.time()) / 2 - float(view.get("now", asked))
    if view.get("engine_started_at") is not None:
        view["engine_started_local"] = float(view["engine_started_at"]) + offset
    if view.get("last_ok_at") is not None:
        view["last_ok_at"] = float(view["last_ok_at"]) + offset
    return view


def observe(config, key, last_tokens=None):
    """What decide() judges, read on this node; a head whose generation
    counter moved since `last_tokens` is busy generating and is not probed."""
    observed = {"unit_active": unit_active(config), "unit_changing": unit_changing(config),
                "engine_started_at": engine_started_at(config)}
    if observed["engine_started_at"] is None:
        return observed
    if config["role"] == "head":
        observed["tokens"] = generation_tokens(config)
        if observed["tokens"] is not None and last_tokens is not None and observed["tokens"] > last_tokens:
            observed["probe_ok"], observed["probe_detail"] = None, "generating"
        else:
            observed["probe_ok"], observed["probe_detail"] = probe_completion(config, key)
            if observed["probe_ok"] and observed["tokens"] is not None:
                # Our own probe's tokens are no sign of anyone else's generation.
                observed["tokens"] = generation_tokens(config)
    else:
        observed["head"] = head_view(config)
    return observed


# --- the service -----------------------------------------------------------------

def journal(message):
    print(message, flush=True)


class Watcher:
    def __init__(self, config):
        self.config = config
        self.memory = fresh_memory()
        self.lock = threading.Lock()
        self.view = {"role": config["role"], "node": config["node"], "engine_started_at": None,
                     "answering": False, "last_ok_at": None, "reason": "starting"}

    def cycle(self, now=None):
        key = env_value(self.config["env_file"], self.config.get("api_key_variable"))
        observed = observe(self.config, key, self.memory.get("tokens"))
        now = time.time() if now is None else now
        action, reason, memory = decide(self.config, observed, self.memory, now)
        # One journal line per change of state: answering and generating are one.
        alive = ("answering", "generating")
        changed = reason != self.memory.get("note") and not (reason in alive and self.memory.get("note") in alive)
        memory["note"] = reason
        self.memory = memory
        with self.lock:
            self.view.update(engine_started_at=observed.get("engine_started_at"),
                             answering=memory.get("last_ok_at") == now, last_ok_at=memory.get("last_ok_at"),
                             reason=reason)
        if action == RESTART:
            journal(f"spark-serving-watch on {self.config['node']}: restart the {self.config['role']} engine: {reason}")
            run(["systemctl", "--no-block", "restart", self.config["unit"]])
        elif changed and (action == HOLD or not reason.startswith(("starting (", "backoff"))):
            journal(f"spark-serving-watch on {self.config['node']}: {reason}")
        return action, reason

    def state(self):
        with self.lock:
            return dict(self.view, now=time.time())


def serve_state(watcher):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path.split("?")[0] != "/state":
                self.send_error(404)
                return
            data = json.dumps(watcher.state()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((watcher.config["listen"], watcher.config["state_port"]), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()


def command_run(config):
    watcher = Watcher(config)
    while True:
        try:
            serve_state(watcher)
            break
        except OSError as error:  # the QSFP address may come a little after boot
            journal(f"spark-serving-watch: cannot listen on {config['listen']}:{config['state_port']} yet: {error}")
            time.sleep(config["interval_s"])
    journal(f"spark-serving-watch on {config['node']}: watching the {config['role']} engine every {config['interval_s']}s")
    while True:
        watcher.cycle()
        time.sleep(config["interval_s"])


def command_prestart(config):
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
    except OSError as error:
        journal(f"spark-serving on {config['node']}: could not drop the page cache: {error}")
    with open("/proc/meminfo") as handle:
        ok, report, line = memory_verdict(handle.read(), config["memory_fraction"], config["memory_setting"],
                                          config["node"])
    journal(line)
    try:
        os.makedirs(os.path.dirname(LAUNCH_PATH), exist_ok=True)
        with open(LAUNCH_PATH, "w") as handle:
            json.dump(dict(report, ok=ok, at=time.time()), handle)
    except OSError:
        pass
    return 0 if ok else 1


def status(config):
    """For the deploy's wait: is the cluster answering, and what is this engine doing."""
    started = engine_started_at(config)
    lines = log_lines(config)
    result = {"node": config["node"], "role": config["role"], "engine_running": started is not None,
              "phase": engine_phase(lines), "ready": False, "detail": ""}
    try:
        with open(LAUNCH_PATH) as handle:
            result["memory"] = json.load(handle)
    except (OSError, ValueError):
        result["memory"] = None
    if started is None:
        result["detail"] = "no engine container running"
    elif config["role"] == "head":
        key = env_value(config["env_file"], config.get("api_key_variable"))
        result["ready"], result["detail"] = probe_completion(config, key)
    else:
        view = head_view(config)
        if view is None:
            result["detail"] = "the head's watcher does not answer"
        else:
            last_ok = view.get("last_ok_at")
            result["ready"] = bool(view.get("answering")) and last_ok is not None and last_ok > started + SETTLE_S
            result["detail"] = "the head answers with this worker in the cluster" if result["ready"] else \
                f"the head: {view.get('reason', '?')}"
    return result


# --- report: what `spark-cluster status` shows of this node ----------------------

def unit_show(config):
    """systemd's ActiveState, SubState and since when (seconds) the unit is in
    its ActiveState, from the monotonic clock: no time zone, no clock skew."""
    code, out = run(["systemctl", "show", "-p", "ActiveState", "-p", "SubState", "-p", "NRestarts",
                     "-p", "StateChangeTimestampMonotonic", config["unit"]])
    values = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    since = None
    try:
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        changed = int(values.get("StateChangeTimestampMonotonic") or 0)
        if changed > 0:
            since = max(0.0, uptime - changed / 1e6)
    except (OSError, ValueError, IndexError):
        pass
    return {"active": values.get("ActiveState", "unknown") if code == 0 else "unknown",
            "sub": values.get("SubState", ""), "restarts": values.get("NRestarts", ""), "since_s": since}


def serving_state(active, engine_running, ready, answered_before=False):
    """What a person calls the node's serving state, from systemd's ActiveState
    and what the engine does: stopped, starting, serving, not answering..."""
    if active in ("inactive", "failed"):
        return "stopped"
    if active == "deactivating":
        return "stopping"
    if active != "active":
        return "starting" if active in ("activating", "reloading") else active
    if not engine_running:
        return "starting"
    if ready:
        return "serving"
    return "not answering" if answered_before else "starting"


def image_id(config):
    """The id of the image the engine runs (its container's), else of the
    image the deploy named (what it would run); "" when neither is here."""
    code, out = run(["docker", "inspect", "-f", "{{.Image}}", config["container"]])
    if code == 0 and out.strip().startswith("sha256:"):
        return out.strip()
    if config.get("image"):
        code, out = run(["docker", "image", "inspect", "-f", "{{.Id}}", config["image"]])
        if code == 0 and out.strip().startswith("sha256:"):
            return out.strip()
    return ""


def api_health(config, key):
    """The head's /health as an HTTP status ("200", "503") or "no answer"."""
    try:
        status_code, _ = _request(config["api_url"] + "/health", key=key, timeout=5)
        return str(status_code)
    except urllib.error.HTTPError as error:
        return str(error.code)
    except (OSError, ValueError):
        return "no answer"


def report(config):
    unit = unit_show(config)
    ready = status(config)
    result = {key: config.get(key) for key in ("node", "role", "engine", "model", "served_model_name", "image")}
    result.update(unit=unit["active"], sub=unit["sub"],
                  restarts=unit["restarts"], since_s=unit["since_s"], image_id=image_id(config),
                  engine_running=ready["engine_running"], ready=ready["ready"], phase=ready["phase"],
                  detail=ready["detail"], health=None)
    answered_before = False
    if config.get("role") == "head":
        result["health"] = api_health(config, env_value(config["env_file"], config.get("api_key_variable")))
        view = head_view(config)  # this node's own watcher: did the engine ever answer?
        answered_before = bool(view and view.get("last_ok_at") is not None)
    result["state"] = serving_state(unit["active"], ready["engine_running"], ready["ready"], answered_before)
    return result


# --- smoke: one real completion, then tokens per second --------------------------

SMOKE_PROMPT = "In two sentences, explain what a DGX Spark cluster is for."


def chat_completion(config, key, max_tokens, timeout, prompt=SMOKE_PROMPT):
    """{ok, text, tokens, seconds, error}: one chat completion from the head's API."""
    body = {"model": config["served_model_name"], "max_tokens": max_tokens, "temperature": 0,
            "messages": [{"role": "user", "content": prompt}]}
    started = time.monotonic()
    result = {"ok": False, "text": "", "tokens": None, "seconds": None, "error": ""}
    try:
        status_code, data = _request(config["api_url"] + "/v1/chat/completions", body, key, timeout)
        answer = json.loads(data.decode() or "{}")
    except urllib.error.HTTPError as error:
        result["error"] = "HTTP %s: %s" % (error.code, error.read()[:200].decode(errors="replace"))
        return result
    except (OSError, ValueError) as error:
        result["error"] = "no answer (%s: %s)" % (error.__class__.__name__, error)
        return result
    result["seconds"] = time.monotonic() - started
    choices = answer.get("choices") or []
    if status_code != 200 or not choices:
        result["error"] = "HTTP %s without choices" % status_code
        return result
    result["text"] = ((choices[0].get("message") or {}).get("content") or "")
    result["tokens"] = (answer.get("usage") or {}).get("completion_tokens")
    result["ok"] = True
    return result


def throughput(runs, seconds):
    """{requests, failed, tokens, seconds, tokens_per_s} over `runs` that took
    `seconds` of wall time together; tokens/s is None when no run counted any."""
    done = [one for one in runs if one["ok"]]
    counted = [one["tokens"] for one in done if isinstance(one["tokens"], (int, float))]
    tokens = sum(counted) if counted else None
    return {"requests": len(runs), "failed": len(runs) - len(done), "tokens": tokens,
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 1) if tokens and seconds > 0 else None}


def smoke(config, key, concurrency=4, max_tokens=128, timeout=300.0):
    """A completion to read, then the same request alone and `concurrency` at once."""
    if config.get("role") != "head":
        return {"ok": False, "node": config.get("node"), "error": "smoke runs on the head only"}
    first = chat_completion(config, key, max_tokens, timeout)
    result = {"ok": first["ok"], "node": config.get("node"), "model": config.get("served_model_name"),
              "image": config.get("image"), "answer": first["text"], "error": first["error"],
              "max_tokens": max_tokens, "concurrency": concurrency}
    if not first["ok"]:
        return result
    started = time.monotonic()
    single = chat_completion(config, key, max_tokens, timeout)
    result["single"] = throughput([single], time.monotonic() - started)
    runs = [None] * concurrency

    def one(index):
        runs[index] = chat_completion(config, key, max_tokens, timeout)

    threads = [threading.Thread(target=one, args=(index,)) for index in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result["concurrent"] = throughput(runs, time.monotonic() - started)
    failures = [one["error"] for one in [single] + runs if not one["ok"]]
    if failures:
        result["ok"], result["error"] = False, "%d of %d timed requests failed: %s" % (
            len(failures), concurrency + 1, failures[0])
    return result


def main(argv):
    command = argv[0] if argv else ""
    config = load_config(os.environ.get("SPARK_WATCH_CONFIG", CONFIG_PATH))
    if command == "run":
        command_run(config)
        return 0
    if command == "prestart":
        return command_prestart(config)
    if command == "status":
        print(json.dumps(status(config)))
        return 0
    if command == "report":
        print(json.dumps(report(config)))
        return 0
    if command == "smoke":
        concurrency = int(argv[1]) if len(argv) > 1 else 4
        max_tokens = int(argv[2]) if len(argv) > 2 else 128
        key = env_value(config["env_file"], config.get("api_key_variable"))
        result = smoke(config, key, concurrency, max_tokens)
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    if command == "logtail":
        count = int(argv[1]) if len(argv) > 1 else 40
        print("\n".join(log_lines(config, count)))
        return 0
    print("usage: serving_watch.py run|prestart|status|report|logtail [N]|smoke [CONCURRENCY [MAX_TOKENS]]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
