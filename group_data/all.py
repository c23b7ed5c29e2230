# Cluster-wide desired state, written once. Per-node facts (addresses, names)
# live in the inventory; derived values (head, ranks, peers) are computed by
# spark_cluster.inventory. Roles fall back to their own defaults.py for
# anything not set here.

cluster_name = "spark"

# --- QSFP network (roles/network) ---------------------------------------------
# "bond": bond0 over the QSFP ports (10.0.0.x, as in the field report of
# DeepSeek V4 Flash on 2 Sparks with SGLang).
# NVIDIA's playbook instead addresses each logical port on its own subnet;
# that mode is not implemented yet and is refused with a clear error.
network_mode = "bond"
qsfp_interfaces = ["enp1s0f0np0", "enp1s0f1np1"]
bond_name = "bond0"
bond_mode = "balance-xor"
mtu = 9000

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
# Every Spark has its GPU and driver, so the verify suite fails a node without
# a working `nvidia-smi`. Only an inventory of GPU-less machines sets False
# (the lab's VMs, inventory/lab_common.py); gpu_memory then skips.
gpu_expected = True

# --- Serving (roles/serving) -------------------------------------------------
serving_engine = "vllm"          # or "sglang"
serving_profile = "deepseek-v4-flash"
serving_image = "vllm-ds4-sm121:latest"
# True when the image's ENTRYPOINT already is `vllm serve` (a vLLM fork's
# image; appending `vllm serve` again fails with "unrecognized arguments").
serving_image_entrypoint_is_engine = True
serving_model = "deepseek-ai/DeepSeek-V4-Flash"
serving_served_model_name = "deepseek-v4-flash"
api_port = 8000
master_port = 29519
# Startup takes 3 to 19 minutes (weights, autotune, CUDA graphs).
serving_start_timeout_s = 1800

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
