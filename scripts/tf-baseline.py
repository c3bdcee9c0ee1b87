#!/usr/bin/env python3
"""TensorFlow CPU timings of the pyNanoFind U-Net on this machine, for comparison with
`nanofind bench`. Needs tensorflow-cpu and tf-keras (not a NanoFind dependency):

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu==2.21.0 tf-keras==2.21.0
    /tmp/tfvenv/bin/python scripts/tf-baseline.py            # JSON lines like nanofind bench

Two intra-op threads, one inter-op thread, graph mode (tf.function), as in
shared/reference/pynanofind/bench. Weights are random: the cost does not depend on them.
"""
import json, os, sys
from bench_timing import timed  # beside this script
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np
import tensorflow as tf
threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(1)
import tf_keras as keras
L = keras.layers

def unet():
    inp = L.Input((None, None, 1))
    skips, x = [], inp
    for w in [4, 8, 16, 32]:
        z = L.BatchNormalization(epsilon=1e-4)(L.Conv2D(w, 3, padding="same")(x))
        skips.append(L.Activation("relu")(z)); x = L.MaxPooling2D()(z)
    for _ in range(2):
        x = L.Activation("relu")(L.BatchNormalization(epsilon=1e-4)(L.Conv2D(32, 3, padding="same")(x)))
    for w, s in zip([32, 16, 8, 4], reversed(skips)):
        x = L.Concatenate()([s, L.UpSampling2D()(x)])
        x = L.Dropout(0.2)(L.Activation("relu")(L.BatchNormalization(epsilon=1e-4)(L.Conv2D(w, 3, padding="same")(x))))
        x = L.Activation("relu")(L.BatchNormalization(epsilon=1e-4)(L.Conv2D(w, 3, padding="same")(x)))
    return keras.Model(inp, L.Conv2D(2, 1, activation="softmax")(x))

model = unet()
infer = tf.function(lambda x: model(x, training=False))
loss_fn = keras.losses.CategoricalCrossentropy()
opt = keras.optimizers.Adam(1e-4)

@tf.function
def train_step(x, y):
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss

rng = np.random.default_rng(0)
for batch in (1, 8):
    x = rng.random((batch, 512, 512, 1), dtype=np.float32)
    mn, md = timed(lambda: infer(x).numpy(), 15, 3)
    print(json.dumps({"name": "tf_infer_tile_512", "batch": batch, "threads": threads,
                      "ms_per_tile": md * 1000 / batch, "ms_per_tile_min": mn * 1000 / batch}), flush=True)
x = rng.random((1, 2048, 2048, 1), dtype=np.float32)
mn, md = timed(lambda: infer(x).numpy(), 3, 1)
print(json.dumps({"name": "tf_infer_2048", "threads": threads, "ms": md * 1000, "ms_min": mn * 1000}), flush=True)
for batch in (4, 20):
    x = rng.random((batch, 512, 512, 1), dtype=np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 2, (batch, 512, 512)), 2).astype(np.float32)
    mn, md = timed(lambda: train_step(x, y).numpy(), 5, 2)
    print(json.dumps({"name": "tf_train_step_512", "batch": batch, "threads": threads,
                      "s_per_step": md, "s_per_step_min": mn}), flush=True)
