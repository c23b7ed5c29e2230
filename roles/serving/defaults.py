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
    "serving_start_timeout_s": 1800,
    # Seconds docker gives the engine to exit before SIGKILL.
    "serving_stop_timeout_s": 60,
}

CONFIG_DIR = "/etc/spark-cluster"
ENV_FILE = f"{CONFIG_DIR}/serving.env"
# Remembers which image (tag and id) the unit last ran, so that reloading a
# different image under the same tag restarts the service.
IMAGE_MARKER = f"{CONFIG_DIR}/serving-image"
# Written by rdma's detector at every start of the unit.
ROCE_ENV_FILE = ROCE_ENV_PATH
UNIT_NAME = "spark-serving.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}"
CONTAINER_NAME = "spark-serving"
