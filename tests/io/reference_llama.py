#!/usr/bin/python3
"""An independent reference for opd's imported models: the Llama / Qwen2 / Qwen3 decoder written
from the architecture's definition in PyTorch, in float64, reading a Hugging Face folder
(config.json and safetensors, one file or shards with an index) with its own small parser.

    reference_llama.py DIR --ids 3,14,15 [--ids 9,2,6 ...]

prints {"logits": [[[...V floats] per position] per sequence]} as JSON on stdout. Exit status 77
when torch is missing (the ctest that runs it then skips). Use Debian's /usr/bin/python3, which
has python3-torch.
"""
import argparse
import json
import os
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"reference_llama.py: {e}", file=sys.stderr)
    sys.exit(77)


def read_safetensors(path):
    """name -> float64 tensor, from the format's definition (8-byte length, JSON, data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        buf = data[b:end]
        shape = e["shape"]
        if e["dtype"] == "F32":
            a = np.frombuffer(buf, dtype="<f4").astype(np.float64)
        elif e["dtype"] == "F16":
            a = np.frombuffer(buf, dtype="<f2").astype(np.float64)
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raise SystemExit(f"{path}: {name}: dtype {e['dtype']} not handled by the reference")
        out[name] = torch.from_numpy(a.reshape(shape).copy())
    return out


def read_folder(d):
    single = os.path.join(d, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        index = json.load(f)
    weights = {}
    for shard in sorted(set(index["weight_map"].values())):
        weights.update(read_safetensors(os.path.join(d, shard)))
    return weights


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def forward(cfg, w, ids):
    mt = cfg["model_type"]
    D = cfg["hidden_size"]
    H = cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads") or H
    E = cfg.get("head_dim") or (128 if mt == "qwen3" else D // H)
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    T = len(ids)

    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    pos = torch.arange(T, dtype=torch.float64)
    inv_freq = 1.0 / (theta ** (torch.arange(0, E, 2, dtype=torch.float64) / E))
    ang = torch.outer(pos, inv_freq)
    ang = torch.cat((ang, ang), dim=-1)  # [T, E]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)

    def lin(h, name):
        y = h @ w[name + ".weight"].T
        if name + ".bias" in w:  # Qwen2's q/k/v
            y = y + w[name + ".bias"]
        return y

    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = lin(h, p + "self_attn.q_proj").view(T, H, E)
        k = lin(h, p + "self_attn.k_proj").view(T, G, E)
        v = lin(h, p + "self_attn.v_proj").view(T, G, E)
        if mt == "qwen3":
            q = rms_norm(q, w[p + "self_attn.q_norm.weight"], eps)
            k = rms_norm(k, w[p + "self_attn.k_norm.weight"], eps)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // G, dim=1)  # query head j reads kv head j // (H / G)
        v = v.repeat_interleave(H // G, dim=1)
        s = torch.einsum("thd,shd->hts", q, k) / (E ** 0.5) + mask
        a = torch.einsum("hts,shd->thd", torch.softmax(s, dim=-1), v).reshape(T, H * E)
        x = x + a @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return x @ head.T


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--ids", action="append", required=True, help="comma-separated token ids")
    a = ap.parse_args()
    with open(os.path.join(a.dir, "config.json")) as f:
        cfg = json.load(f)
    if cfg["model_type"] not in ("llama", "qwen2", "qwen3"):
        raise SystemExit(f"model_type {cfg['model_type']} not handled by the reference")
    w = read_folder(a.dir)
    with torch.no_grad():
        logits = [forward(cfg, w, [int(t) for t in s.split(",")]).tolist() for s in a.ids]
    json.dump({"logits": logits}, sys.stdout)


if __name__ == "__main__":
    main()
