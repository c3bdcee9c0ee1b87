#!/usr/bin/env python3
"""PyTorch CPU timings of the pyNanoFind U-Net on this machine, for comparison with
`nanofind bench` where TensorFlow is not installed (`scripts/tf-baseline.py` is the reference
the issue names; this is the same network and the same rows in the other common framework).
Needs torch (not a NanoFind dependency), e.g. from a local wheel without touching the system:

    pip install --no-deps --target /tmp/torchlib torch-2.13.0+cpu-...whl
    PYTHONPATH=/tmp/torchlib python3 scripts/torch-baseline.py      # JSON lines like nanofind bench

Two intra-op threads, one inter-op thread, eager mode and torch.compile-free (what a notebook
runs), NCHW float32. Weights are random: the cost does not depend on them.
"""
import json, sys
from bench_timing import timed  # beside this script
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
torch.set_num_threads(threads)
torch.set_num_interop_threads(1)


class UNet(nn.Module):
    """Conv 3×3 → BN per stage; the skip is ReLU(BN), the main path max-pools the pre-ReLU BN
    output; two centre conv-BN-ReLU; decoders upsample ×2, concatenate the skip first,
    conv-BN-ReLU, dropout 0.2, conv-BN-ReLU; a 1×1 head and a softmax (as nanofind's plan)."""

    def __init__(self, widths=(4, 8, 16, 32)):
        super().__init__()
        self.down, cin = nn.ModuleList(), 1
        for w in widths:
            self.down.append(nn.Sequential(nn.Conv2d(cin, w, 3, padding=1), nn.BatchNorm2d(w, eps=1e-4)))
            cin = w
        c = widths[-1]
        self.centre = nn.Sequential(*[m for _ in range(2) for m in
                                      (nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c, eps=1e-4), nn.ReLU())])
        self.up, low = nn.ModuleList(), c
        for w in reversed(widths):
            self.up.append(nn.Sequential(
                nn.Conv2d(w + low, w, 3, padding=1), nn.BatchNorm2d(w, eps=1e-4), nn.ReLU(), nn.Dropout(0.2),
                nn.Conv2d(w, w, 3, padding=1), nn.BatchNorm2d(w, eps=1e-4), nn.ReLU()))
            low = w
        self.head = nn.Conv2d(widths[0], 2, 1)

    def forward(self, x):
        skips = []
        for stage in self.down:
            z = stage(x)
            skips.append(F.relu(z))
            x = F.max_pool2d(z, 2)
        x = self.centre(x)
        for stage, s in zip(self.up, reversed(skips)):
            x = stage(torch.cat([s, F.interpolate(x, scale_factor=2, mode="nearest")], 1))
        return self.head(x)  # logits; softmax below



model = UNet()
rng = np.random.default_rng(0)
model.eval()
with torch.inference_mode():
    for batch in (1, 8):
        x = torch.from_numpy(rng.random((batch, 1, 512, 512), dtype=np.float32))
        mn, md = timed(lambda: F.softmax(model(x), 1), 15, 3)
        print(json.dumps({"name": "torch_infer_tile_512", "batch": batch, "threads": threads,
                          "ms_per_tile": md * 1000 / batch, "ms_per_tile_min": mn * 1000 / batch}), flush=True)
    x = torch.from_numpy(rng.random((1, 1, 2048, 2048), dtype=np.float32))
    mn, md = timed(lambda: F.softmax(model(x), 1), 3, 1)
    print(json.dumps({"name": "torch_infer_2048", "threads": threads, "ms": md * 1000, "ms_min": mn * 1000}), flush=True)
model.train()
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
for batch in (4, 20):
    x = torch.from_numpy(rng.random((batch, 1, 512, 512), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 2, (batch, 512, 512)))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    mn, md = timed(step, 5, 2)
    print(json.dumps({"name": "torch_train_step_512", "batch": batch, "threads": threads,
                      "s_per_step": md, "s_per_step_min": mn}), flush=True)
print(json.dumps({"name": "torch_version", "version": torch.__version__}), flush=True)
