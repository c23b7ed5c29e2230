"""The serving role's fixed paths and names (its settings: spark_cluster/schema.py)."""

from roles.rdma.settings import ROCE_ENV_PATH

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
