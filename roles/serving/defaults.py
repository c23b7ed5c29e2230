from roles.rdma.settings import ROCE_ENV_PATH
from spark_cluster.engines import DEFAULT_ENGINE

DEFAULTS = {
    "ssh_user": None,
    "serving_engine": DEFAULT_ENGINE,
    "serving_profile": None,
    "serving_profiles": {},
    # None: the engine's own default (spark_cluster.engines). The image itself
    # (serving_image) is read in spark_cluster.engine_image, as every role names it.
    "serving_image_entrypoint_is_engine": None,
    "serving_model": None,
    "serving_served_model_name": None,
    "api_port": 8000,
    "master_port": 29519,
    # How long the engine may take to answer its first completion (weights,
    # autotune, CUDA graphs: 3-19 minutes): the deploy's wait, the unit's
    # start timeout, and the watcher's patience with a starting head.
    "serving_start_timeout_s": 1800,
    # Seconds docker gives the engine to exit before SIGKILL.
    "serving_stop_timeout_s": 60,
    # After a run that (re)started the engine, wait until the head answers a
    # chat completion, showing the engine's phase; False: end once systemd started it.
    "serving_wait_ready": True,
    # Where the head's API listens: "qsfp" (its QSFP control address: only the
    # cluster's cable reaches it; reach it from elsewhere over ssh -L) or
    # "all" (every address, the management LAN included: set an API key).
    "api_listen": "qsfp",
    # A file on the controller holding the API key (mode 0600), or None for
    # no key. The deploy writes it to serving.env (0600) only, never to the
    # unit or an argv; the readiness wait, the watcher and verify use it.
    "serving_api_key_file": None,
    # The share of the node's memory that must be free (page cache dropped)
    # before an engine starts. None: the profile's own claim (vLLM's
    # gpu_memory_utilization, SGLang's mem_fraction_static); 0: report only.
    "serving_memory_check": None,
    # The watcher (spark-serving-watch.service, files/serving_watch.py).
    "serving_watch_interval_s": 10,  # seconds between looks
    "serving_watch_probe_timeout_s": 30,  # a one-token completion slower than this fails
    "serving_watch_fail_after": 3,  # failed probes in a row, after it answered, that restart the head
    "serving_watch_rejoin_grace_s": 30,  # a head restarted this long after a worker's engine: the worker rejoins
    "serving_watch_backoff_s": 60,  # doubled per restart within the hour
    "serving_watch_backoff_max_s": 900,
    "serving_watch_max_restarts_per_hour": 6,  # then it holds and says so
    "serving_watch_port": 29520,  # each watcher's /state, on its QSFP control address
}

CONFIG_DIR = "/etc/spark-cluster"
ENV_FILE = f"{CONFIG_DIR}/serving.env"
# Remembers which image (tag and id) the unit last ran, so that reloading a
# different image under the same tag restarts the service.
IMAGE_MARKER = f"{CONFIG_DIR}/serving-image"
# Written by rdma's detector at every start of the unit.
ROCE_ENV_FILE = ROCE_ENV_PATH
UNIT_NAME = "spark-serving.service"
WATCH_UNIT_NAME = "spark-serving-watch.service"
WATCH_UNIT_FILE = f"/etc/systemd/system/{WATCH_UNIT_NAME}"
WATCH_CONFIG = f"{CONFIG_DIR}/watch.json"
# Beside rdma's RoCE detector.
WATCH_PATH = "/usr/local/lib/spark-cluster/serving_watch.py"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}"
CONTAINER_NAME = "spark-serving"
