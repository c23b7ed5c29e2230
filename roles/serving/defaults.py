DEFAULTS = {
    "ssh_user": None,
    "serving_engine": "vllm",
    "serving_profile": None,
    "serving_profiles": {},
    "serving_image": None,
    "serving_image_entrypoint_is_engine": False,
    "serving_model": None,
    "serving_served_model_name": None,
    "api_port": 8000,
    "master_port": 29519,
    "serving_start_timeout_s": 1800,
    "bond_name": "bond0",
    # Set by the lab inventory: build the stand-in engine inside the node
    # instead of expecting a real engine image there.
    "serving_standin": False,
    # Seconds docker gives the engine to exit before SIGKILL.
    "serving_stop_timeout_s": 60,
}

CONFIG_DIR = "/etc/spark-cluster"
ENV_FILE = f"{CONFIG_DIR}/serving.env"
# Remembers which image (tag and id) the unit last ran, so that reloading a
# different image under the same tag restarts the service.
IMAGE_MARKER = f"{CONFIG_DIR}/serving-image"
ROCE_ENV_FILE = "/run/spark-cluster/roce.env"
UNIT_NAME = "spark-serving.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT_NAME}"
CONTAINER_NAME = "spark-serving"
STANDIN_DIR = "/usr/local/lib/spark-cluster/standin"
STANDIN_BUILDER = "/usr/local/lib/spark-cluster/build_standin.py"
