# Cluster-wide desired state, written once. Per-node facts (addresses, names)
# live in the inventory; derived values (head, ranks, peers) are computed by
# spark_cluster.inventory. Every setting, with its type and default, is
# declared once in spark_cluster/schema.py and listed in docs/settings.md;
# what is not set here takes that default. A key the schema does not declare
# (a typo) stops the run before pyinfra connects, naming the closest setting.

cluster_name = "spark"

# --- QSFP network (roles/network, spark_cluster/fabric.py) -------------------
# A DGX Spark's QSFP port is two PCIe halves, each its own netdev and RDMA
# device on the same cable, each good for ~100-112 Gb/s: the cable's 200 Gb/s
# needs both. Every cabled half is a "rail".
# "dual_subnet" (default, NVIDIA's playbook layout): each rail on a subnet of
#   its own (qsfp_subnets, in rail order); NCCL gets every rail's HCA. A node's
#   qsfp_address lies in the first subnet; its host number carries over
#   (192.168.100.10 -> 192.168.101.10).
# "bond": bond0 over the rails with the node's qsfp_address (the field
#   reports' layout); NCCL gets the bond's RDMA device(s).
network_mode = "dual_subnet"
# Where the cable is: [1] = one cable in port 1 (rails enp1s0f1np1 and
# enP2p1s0f1np1); [0, 1] = both ports cabled (four rails). Preflight stops a
# node whose carriers say otherwise.
qsfp_ports = [1]
qsfp_subnets = ["192.168.100.0/24", "192.168.101.0/24", "192.168.102.0/24", "192.168.103.0/24"]
bond_name = "bond0"               # bond mode only
bond_mode = "balance-xor"         # bond mode only
mtu = 9000
# Another configuration of the QSFP ports (NVIDIA's /etc/netplan/40-cx7.yaml,
# NetworkManager profiles, networkd files) stops the run, naming each one.
# True: move them aside under /etc/spark-cluster/takeover/ (restore.sh there)
# and converge. A netplan file holding exactly our rail addresses is adopted
# (moved aside the same way) without this.
qsfp_takeover = False

# --- RoCE (roles/rdma) -------------------------------------------------------
# "auto" reads sysfs on each node: the HCA behind the QSFP netdevs and the GID
# index that holds the RoCE v2 IPv4 GID (3 on a CX-7, 1 on soft-RoCE).
# Pin them only if detection picks wrong on your hardware.
nccl_ib_hca = "auto"
nccl_ib_gid_index = "auto"

# --- Preflight (roles/preflight) -------------------------------------------
# Free GiB the model cache needs on the admin's home filesystem on every node
# (weights are 149-168 GB); the lab inventory overrides it with a tiny value.
model_disk_gib = 200
# False: nodes that disagree (kernel, driver, engine image) only warn; a
# node's own faults (QSFP link down, low disk) still stop it.
preflight_strict = True

# --- GPU (roles/gpu) ---------------------------------------------------------
# Verify setting (tests/verify gpu_memory; the gpu role does not read it): the
# GiB CUDA must see. A GB10 shows ~119.7 GiB to CUDA without the DRM override,
# ~62 GiB with it.
min_gpu_memory_gib = 100
# Verify setting (tests/verify rdma; no role reads it): each rail's
# ib_write_bw must reach this share of the link rate sysfs reports (a CX-7
# hot-plugged after boot sits at ~13 Gb/s and passes every ping); 0 reports
# the bandwidth without judging it (the lab's soft-RoCE).
rdma_min_link_fraction = 0.5
# Every Spark has its GPU and driver, so the verify suite fails a node without
# a working `nvidia-smi`. Only an inventory of GPU-less machines sets False
# (the lab's VMs, inventory/lab_common.py); gpu_memory then skips.
gpu_expected = True

# --- Serving (roles/serving) -------------------------------------------------
serving_engine = "vllm"          # or "sglang"
serving_profile = "deepseek-v4-flash"
# The image must carry the engine: switching serving_engine to "sglang" means
# an SGLang image too (or serving_image = None and no entrypoint flag: each
# engine's default image, docs/settings.md). A vLLM image under SGLang is refused.
serving_image = "vllm-ds4-sm121:latest"
# True when the image's ENTRYPOINT already is `vllm serve` (a vLLM fork's
# image; appending `vllm serve` again fails with "unrecognized arguments").
serving_image_entrypoint_is_engine = True
serving_model = "deepseek-ai/DeepSeek-V4-Flash"
serving_served_model_name = "deepseek-v4-flash"
api_port = 8000
master_port = 29519
# Startup takes 3 to 19 minutes (weights, autotune, CUDA graphs). A run that
# (re)starts the engine waits this long for the head's first chat completion,
# showing each engine's phase (serving_wait_ready = False: it does not wait).
serving_start_timeout_s = 1800
serving_wait_ready = True
# Where the head's API listens: "qsfp" (its QSFP address: only the cluster's
# cable reaches it; from elsewhere use ssh -L 8000:HEAD_QSFP_IP:8000 head) or
# "all" (every address, the management LAN included: set an API key).
api_listen = "qsfp"
# A file on this controller holding the API key (chmod 600), or None. The
# deploy writes it into the 0600 serving.env only (VLLM_API_KEY); the readiness
# wait, the watcher and verify use it. SGLang takes a key on its command line
# only (readable by every local user), so it is refused with SGLang.
serving_api_key_file = None
# The watcher on every node (spark-serving-watch.service) judges engines by
# generated tokens, not /health: the head probes a one-token completion; a
# worker whose head restarted is restarted to rejoin; a head that stops
# generating (a worker died, a wedge) is restarted, and its workers follow.
# Defaults in roles/serving/defaults.py (serving_watch_*): probes every 10 s,
# 3 failures in a row, backoff from 60 s, at most 6 restarts an hour.
# Before each start the page cache is dropped and the engine refused (one
# journal line) unless the profile's gpu_memory_utilization / mem_fraction_static
# share of memory is free. `spark-cluster stop|start|restart` (stop.py,
# start.py, restart.py) act on the whole cluster: watchers stop first; the
# workers start before the head, then the watchers.

# Engine flags per model profile; the serving role adds the cluster-derived
# ones (tensor parallel size = world size, nnodes, node rank, master address).
serving_profiles = {
    "deepseek-v4-flash": {
        "vllm": {
            "enable_expert_parallel": True,
            "kv_cache_dtype": "fp8",
            "block_size": 256,
            "enable_prefix_caching": True,
            "max_model_len": 393216,
            "max_num_seqs": 8,
            "max_num_batched_tokens": 4096,
            "gpu_memory_utilization": 0.80,
            "speculative_config": {"method": "deepseek_mtp", "num_speculative_tokens": 2},
            "trust_remote_code": True,
        },
        "sglang": {
            "kv_cache_dtype": "fp8_e4m3",
            "context_length": 393216,
            "mem_fraction_static": 0.80,
            "trust_remote_code": True,
        },
        "env": {
            "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
            "TORCH_CUDA_ARCH_LIST": "12.1a",
            "VLLM_TRITON_MLA_SPARSE": "1",
            "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1",
        },
    },
}
