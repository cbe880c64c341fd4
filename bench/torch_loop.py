"""The obvious PyTorch implementation of SEMANTICS.md, as a user would write it.

Per time step, per layer: a convolution (or linear map) of the input signal
and one of the prospective map with |W|, then the elementwise neuron update
of SEMANTICS.md, float32, NCHW tensors, on CPU or CUDA. No event tricks: it
is the literal algorithm, the peer the native backends are measured against.
It records what the native backends return (first-spike times, spike
counts, synaptic operations per step, class counts), so it computes the same
thing; the harness checks that it agrees with our result.

Also :class:`TorchANN`, the ANN forward pass of the same model (ReLU), for
the SNN-time / ANN-time ratio.
"""
from __future__ import annotations

import numpy as np

# torch is imported on first use (available()): the harness runs without it, and
# importing it costs seconds.
torch = None
F = None
_import_error = None

from ttfs_native.model import connectivity
from ttfs_native.model.layers import concat_axis
from ttfs_native.model import INPUT_NAME, Model
from ttfs_native.model.residual import add_bias, add_groups
from ttfs_native.simulation.philox import softmax_uniforms


def available() -> tuple:
    """(True, version) if torch can be imported (imports it), else (False, reason)."""
    global torch, F, _import_error
    if torch is None and _import_error is None:
        try:
            import torch as _torch
            import torch.nn.functional as _F
            torch, F = _torch, _F
        except ImportError as e:  # pragma: no cover - depends on the environment
            _import_error = str(e)
    if torch is None:
        return False, f"torch is not importable ({_import_error}) - PyTorch peers skipped"
    return True, torch.__version__


def cuda_available() -> bool:
    return available()[0] and torch.cuda.is_available()


def strict_float32():
    """No TF32 anywhere: the semantics are float32 (cuDNN allows TF32 by default)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _prepare(device) -> None:
    """Torch present, strict float32, cuDNN autotuning on a GPU."""
    ok, why = available()
    if not ok:
        raise RuntimeError(why)
    strict_float32()
    if str(device).startswith("cuda"):
        torch.backends.cudnn.benchmark = True


class _Layer:
    """One layer translated to torch: L(x), L_abs(x) and the plain ANN op."""

    def __init__(self, spec, weights, dt32, device):
        self.spec, self.name, self.type = spec, spec.name, spec.type
        self.inbound = list(spec.inbound)
        c = spec.config
        self.rank3_in = len(spec.input_shapes[0]) == 3
        pt, pb, pl, pr = spec.pads
        self.symmetric = pt == pb and pl == pr
        self.pad = (pl, pr, pt, pb)           # F.pad order: last axis first
        self.weight = self.abs_weight = self.bias_dt = self.bias = None
        if spec.is_weighted:
            k = weights["kernel"]
            if spec.type == "Dense":
                if len(spec.input_shape) != 1:
                    raise NotImplementedError(f"torch loop: Dense '{spec.name}' on a feature map")
                w = np.ascontiguousarray(k.T)                                  # (out, in)
                self.groups = 1
            elif spec.type == "Conv2D":
                w = np.ascontiguousarray(k.transpose(3, 2, 0, 1))              # (out, in, kh, kw)
                self.groups = 1
            else:  # DepthwiseConv2D: output channel c*mult+m <- input channel c
                kh, kw, cin, mult = k.shape
                w = np.ascontiguousarray(k.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))
                self.groups = cin
            self.weight = torch.from_numpy(w).to(device)
            self.abs_weight = self.weight.abs()
            if weights["bias"] is not None:
                self.bias = torch.from_numpy(weights["bias"]).to(device)
                self.bias_dt = torch.from_numpy(weights["bias"] * dt32).to(device)
            self.stride = tuple(c.get("strides", (1, 1)))
            self.dilation = tuple(c.get("dilation_rate", (1, 1)))
        if spec.type in ("AveragePooling2D", "MaxPooling2D"):
            self.kernel, self.stride = tuple(c["pool_size"]), tuple(c["strides"])
            if spec.type == "AveragePooling2D" and any(spec.pads):
                from ttfs_native.model.ops import pool_cell_counts
                cnt = pool_cell_counts(spec)[:, :, 0]                          # (oh, ow)
                self.count = torch.from_numpy(np.ascontiguousarray(cnt)).to(device)
            else:
                self.count = None

    # ------------------------------------------------------------ operators
    def _weighted(self, x, w, b):
        if self.type == "Dense":
            return F.linear(x, w, b)
        if self.symmetric:
            return F.conv2d(x, w, b, self.stride, (self.pad[2], self.pad[0]), self.dilation, self.groups)
        return F.conv2d(F.pad(x, self.pad), w, b, self.stride, 0, self.dilation, self.groups)

    def avgpool(self, x):
        if self.count is None:
            return F.avg_pool2d(x, self.kernel, self.stride)
        # 'same' padding: float32 window sum / number of cells inside the input
        return F.avg_pool2d(F.pad(x, self.pad), self.kernel, self.stride, divisor_override=1) / self.count

    def maxpool(self, x):
        if any(self.pad):
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.kernel, self.stride)

    def L(self, x):          # W*x + b*dt
        return self.avgpool(x) if self.type == "AveragePooling2D" else self._weighted(x, self.weight, self.bias_dt)

    def L_abs(self, x):      # |W|*x
        return self.avgpool(x) if self.type == "AveragePooling2D" else self._weighted(x, self.abs_weight, None)

    def ann(self, x, inputs=None):   # the ANN layer, with its activation (an Add: all its inputs)
        if self.spec.is_add:
            out = sum(v if scale == 1.0 else v * float(np.float32(scale))
                      for v, scale in zip(inputs, self.spec.scales))
            out = F.relu(out) if self.spec.activation == "relu" else out
            return out if self.spec.max_value is None else out.clamp(max=float(np.float32(self.spec.max_value)))
        if self.type == "AveragePooling2D":
            return self.avgpool(x)
        if self.type == "MaxPooling2D":
            return self.maxpool(x)
        out = self._weighted(x, self.weight, self.bias)
        act = self.spec.activation
        if act == "relu":
            return F.relu(out)
        if act == "softmax":
            return torch.softmax(out, dim=1)
        return out


def _structural(spec, tensors):
    """Flatten / Reshape / ZeroPadding2D / Concatenate on NCHW (rank 3) or (N, F) tensors."""
    x = tensors[0]
    if spec.type == "ZeroPadding2D":
        (top, bottom), (left, right) = spec.config["padding"]
        return F.pad(x, (left, right, top, bottom))
    if spec.type == "Concatenate":
        axis = concat_axis(spec)             # channels-last axis without the batch axis
        rank = len(spec.input_shapes[0])
        dim = {0: 2, 1: 3, 2: 1}[axis] if rank == 3 else axis + 1
        return torch.cat(tensors, dim=dim)
    # Flatten / Reshape follow Keras' channels-last element order
    if x.dim() == 4:
        x = x.permute(0, 2, 3, 1)
    x = x.reshape((x.shape[0],) + tuple(spec.output_shape))
    if len(spec.output_shape) == 3:
        x = x.permute(0, 3, 1, 2)
    elif len(spec.output_shape) not in (1,):
        raise NotImplementedError(f"torch loop: Reshape '{spec.name}' to rank {len(spec.output_shape)}")
    return x.contiguous()


def _nchw(shape):
    return (shape[2], shape[0], shape[1]) if len(shape) == 3 else tuple(shape)


def _to_nhwc(t: "torch.Tensor") -> np.ndarray:
    if t.dim() == 4:
        t = t.permute(0, 2, 3, 1)
    return t.contiguous().cpu().numpy()


def _to_nchw_input(x, device):
    t = torch.as_tensor(np.ascontiguousarray(x, np.float32)).to(device)
    return t.permute(0, 3, 1, 2).contiguous() if t.dim() == 4 else t


class TorchANN:
    """The converted ANN's forward pass in PyTorch (cuDNN on a GPU), float32."""

    def __init__(self, model: Model, device: str = "cpu"):
        _prepare(device)
        self.model, self.device = model, torch.device(device)
        self.layers = [_Layer(s, model.weights.get(s.name), np.float32(1.0), self.device)
                       if not s.is_structural else s for s in model.layers]

    def to_device(self, x):
        return _to_nchw_input(x, self.device)

    def __call__(self, x):
        with torch.inference_mode():
            return self._forward(x)

    def _forward(self, x):
        acts = {INPUT_NAME: x}
        for layer in self.layers:
            if isinstance(layer, _Layer):
                acts[layer.name] = layer.ann(acts[layer.inbound[0]], [acts[n] for n in layer.inbound])
            else:
                acts[layer.name] = _structural(layer, [acts[n] for n in layer.inbound])
        return acts[self.layers[-1].name]

    def synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


class TorchTTFS:
    """Time-stepped TTFS / dynamic threshold simulation in PyTorch (SEMANTICS.md, literally).

    ``run(x)`` simulates a batch (channels-last numpy input or an NCHW tensor
    from :meth:`to_device`) and returns device tensors: ``counts`` (N,
    classes, T) int32, ``first`` {layer: first-spike times, NCHW}, ``spikes``
    {layer: (N,) int64}, ``synops`` (N, T) float64. ``record=False`` keeps
    only the class counts.
    """

    def __init__(self, model: Model, steps: int, dt: float = 1.0, v_thresh: float = 1.0,
                 tau_refrac: float | None = None, leak: bool = False, seed: int = 0,
                 device: str = "cpu"):
        _prepare(device)
        self.model, self.steps, self.device = model, int(steps), torch.device(device)
        self.dt = np.float32(dt)
        self.v0 = np.float32(v_thresh)
        self.refrac = np.float32(steps * dt if tau_refrac is None else tau_refrac)
        self.leak, self.leak_step, self.seed = bool(leak), np.float32(0.1) * np.float32(dt), int(seed)
        self.layers = [_Layer(s, model.weights.get(s.name), self.dt, self.device)
                       if not s.is_structural else s for s in model.layers]
        out = model.output_layer
        self.softmax_out = out.is_weighted and out.activation == "softmax"
        if self.softmax_out and len(out.output_shape) != 1:
            raise NotImplementedError("torch loop: softmax output on a feature map")
        self.groups = {s.name: self._add_groups(model, s) for s in model.layers if s.is_add}
        fan = connectivity.fanouts(model, "exact")
        self.fanout = {s.name: torch.from_numpy(np.ascontiguousarray(
            fan[s.name].transpose(2, 0, 1) if len(s.output_shape) == 3 else fan[s.name])).to(self.device)
            for s in model.spiking_layers}

    def _add_groups(self, model: Model, spec) -> tuple:
        """An Add's synapse groups as torch operands (model/residual.py, the numbers every backend
        uses): (source, branch layer with kernel f32(s_b W_b) or None, identity weight per channel),
        and its bias times dt."""
        def per_channel(v):
            t = torch.from_numpy(np.ascontiguousarray(v, np.float32)).to(self.device)
            return t.reshape((-1, 1, 1)) if len(spec.output_shape) == 3 else t

        groups = [(g.source, _Layer(g.layer, {"kernel": g.kernel, "bias": None}, self.dt, self.device), None)
                  if g.layer is not None else (g.source, None, per_channel(g.kernel))
                  for g in add_groups(model, spec)]
        bias = add_bias(model, spec)
        return groups, None if bias is None else per_channel(bias * self.dt)

    def _add_currents(self, name, sig):
        """(L_abs, L, has_input) of an Add: sums over its groups."""
        groups, bias = self.groups[name]
        missing = current = has_input = 0
        for source, branch, weight in groups:
            a, p = sig[source]
            n = a.shape[0]
            missing = missing + (branch.L_abs(p) if branch else weight.abs() * p)
            current = current + (branch.L(a) if branch else weight * a)
            has_input = has_input | (a.reshape(n, -1) != 0).any(dim=1)
        return missing, current if bias is None else current + bias, has_input

    def to_device(self, x):
        return _to_nchw_input(x, self.device)

    def synchronize(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, x, record: bool = True, sample_offset: int = 0, early_stop: bool = False,
            steps: int | None = None) -> dict:
        """``steps`` < T runs only the first steps (a warm-up); the result arrays keep T columns."""
        with torch.inference_mode():
            return self._run(x, record, sample_offset, early_stop, steps)

    def _run(self, x, record, sample_offset, early_stop, steps) -> dict:
        if isinstance(x, np.ndarray):
            x = self.to_device(x)
        n, dev, f32 = x.shape[0], self.device, torch.float32
        dt, v0 = float(self.dt), float(self.v0)
        classes = self.model.num_classes
        spiking = self.model.spiking_layers
        # neuron state per spiking layer: V, theta, R, S, P (and Sp for max pooling)
        st = {}
        for s in spiking:
            shape = (n,) + _nchw(s.output_shape)
            st[s.name] = {"V": torch.zeros(shape, dtype=f32, device=dev),
                          "theta": torch.full(shape, v0, dtype=f32, device=dev),
                          "R": torch.zeros(shape, dtype=f32, device=dev),
                          "S": torch.full(shape, -1.0, dtype=f32, device=dev),
                          "Sp": torch.full(shape, -1.0, dtype=f32, device=dev)}
        first = {s.name: torch.zeros((n,) + _nchw(s.output_shape), dtype=f32, device=dev) for s in spiking}
        spikes = {s.name: torch.zeros(n, dtype=torch.int64, device=dev) for s in spiking}
        synops = torch.zeros((n, self.steps), dtype=torch.float64, device=dev)
        counts = torch.zeros((n, classes, self.steps), dtype=torch.int32, device=dev)
        class_count = torch.zeros((n, classes), dtype=torch.int32, device=dev)
        x_dt = x * dt
        zeros_in = torch.zeros_like(x)
        samples = np.arange(sample_offset, sample_offset + n)
        out_name = self.model.output_layer.name
        running = torch.ones(n, dtype=torch.bool, device=dev)
        stop_step = torch.full((n,), self.steps, dtype=torch.int32, device=dev)

        for t in range(1, min(self.steps, steps or self.steps) + 1):
            tau = np.float32(t) * self.dt
            refrac_end = float(tau + self.refrac)
            tau = float(tau)
            sig = {INPUT_NAME: (x_dt, zeros_in)}
            for layer in self.layers:
                if not isinstance(layer, _Layer):     # structural
                    ins = [sig[name] for name in layer.inbound]
                    sig[layer.name] = (_structural(layer, [a for a, _ in ins]),
                                       _structural(layer, [p for _, p in ins]))
                    continue
                if layer.spec.is_branch:              # no neurons: a synapse group of its Add
                    continue
                a_in, p_in = sig[layer.inbound[0]] if not layer.spec.is_add else (None, None)
                s = st[layer.name]
                if layer.type == "MaxPooling2D":
                    m = layer.maxpool(a_in)
                    rec = (m > 0) ^ (s["S"] > 0)
                    s["S"] = torch.where(m != 0, tau, s["S"])
                    mp = layer.maxpool(p_in)
                    s["Sp"] = torch.where(mp != 0, tau, s["Sp"])
                    a_out = torch.where(s["S"] > 0, dt, 0.0)
                    p_out = torch.where(s["Sp"] > 0, dt, 0.0)
                else:
                    if layer.spec.is_add:
                        missing, current, has_input = self._add_currents(layer.name, sig)
                    else:
                        missing = layer.L_abs(p_in)                                    # 1
                        current = layer.L(a_in)                                        # 2
                        has_input = (a_in.reshape(n, -1) != 0).any(dim=1)
                    if layer.type != "AveragePooling2D":   # pooling of a silent input is 0 anyway
                        current = current * has_input.reshape((n,) + (1,) * (current.dim() - 1))
                    masked = torch.where(s["R"] > tau, 0.0, current)                   # 3
                    v_new = s["V"] + masked                                            # 4
                    if self.leak:
                        v_new = torch.where(v_new > 0, v_new - float(self.leak_step), v_new)
                    if self.softmax_out and layer.name == out_name:
                        u = torch.from_numpy(softmax_uniforms(self.seed, layer.spec.size, samples, t)).to(dev)
                        rec = u <= torch.softmax(v_new, dim=1)
                        s["V"] = v_new
                        a_out = rec.to(f32)
                    else:
                        rec = v_new >= s["theta"]                                      # 5
                        s["V"] = torch.where(rec, 0.0, v_new)                          # 6
                        s["R"] = torch.where(rec, refrac_end, s["R"])                  # 7
                        s["S"] = torch.where(rec, tau, s["S"])                         # 11
                        a_out = torch.where(s["S"] > 0, dt, 0.0)
                    p_out = ((current > 0) & (s["R"] <= tau)).to(f32)                  # 9
                    s["theta"] = missing + v0                                          # 10
                sig[layer.name] = (a_out, p_out)
                if record:
                    if early_stop:   # stopped samples record nothing more
                        rec = rec & running.reshape((n,) + (1,) * (rec.dim() - 1))
                    f = first[layer.name]
                    first[layer.name] = torch.where(rec & (f == 0), tau, f)
                    flat = rec.reshape(n, -1)
                    spikes[layer.name] += flat.sum(dim=1)
                    synops[:, t - 1] += (rec * self.fanout[layer.name]).reshape(n, -1).sum(dim=1, dtype=torch.float64)
            out_on = sig[out_name][0].reshape(n, -1) > 0
            if early_stop:
                out_on = out_on & running[:, None]
            class_count += out_on.to(torch.int32)
            counts[:, :, t - 1] = class_count
            if early_stop:   # per sample: stop at the first step its output fired
                decided = out_on.any(dim=1)
                stop_step = torch.where(decided, t, stop_step)
                running = running & ~decided
                if not bool(running.any()):
                    counts[:, :, t:] = class_count[:, :, None]
                    break
        return {"counts": counts, "first": first, "spikes": spikes, "synops": synops, "stop_step": stop_step}

    def to_numpy(self, raw: dict) -> dict:
        """Device results -> numpy, channels-last like SimulationResult; adds predictions."""
        counts = raw["counts"].cpu().numpy()
        final = counts[:, :, -1]
        preds = np.where(final.max(axis=1) > 0, final.argmax(axis=1), -1)
        return {"counts": counts, "predictions": preds,
                "first_spike_times": {k: _to_nhwc(v) for k, v in raw["first"].items()},
                "spike_counts": {k: v.cpu().numpy() for k, v in raw["spikes"].items()},
                "synops_t": raw["synops"].cpu().numpy(), "stop_step": raw["stop_step"].cpu().numpy()}


def result_arrays(result, k: int | None = None) -> dict:
    """The comparable arrays of a SimulationResult (its first ``k`` samples)."""
    k = result.num_samples if k is None else k
    return {"predictions": result.predictions[:k], "synops_t": result.synops_t[:k],
            "first_spike_times": {n: t[:k] for n, t in result.first_spike_times.items()}}


def result_arrays_slice(arrays: dict, k: int) -> dict:
    """The first ``k`` samples of a :func:`result_arrays` dict."""
    return {"predictions": arrays["predictions"][:k], "synops_t": arrays["synops_t"][:k],
            "first_spike_times": {n: t[:k] for n, t in arrays["first_spike_times"].items()}}


def compare(ours, theirs: dict) -> dict:
    """Agreement of two results on the same samples: dicts as from ``to_numpy`` /
    :func:`result_arrays` (a SimulationResult is accepted for ``ours``)."""
    if not isinstance(ours, dict):
        ours = result_arrays(ours)
    same = total = 0
    per_layer = {}
    for name, t in ours["first_spike_times"].items():
        o = theirs["first_spike_times"][name]
        eq = int(np.sum(t == o))
        per_layer[name] = eq / max(1, t.size)
        same, total = same + eq, total + t.size
    n = len(ours["predictions"])
    preds_equal = int(np.sum(ours["predictions"] == theirs["predictions"]))
    synops_ours = float(ours["synops_t"].sum())
    synops_theirs = float(theirs["synops_t"].sum())
    return {"samples": n,
            "predictions_equal": preds_equal,
            "predictions_all_equal": preds_equal == n,
            "spike_time_agreement": same / max(1, total),
            "worst_layer": min(per_layer, key=per_layer.get) if per_layer else None,
            "worst_layer_agreement": min(per_layer.values()) if per_layer else 1.0,
            "synops_relative_difference": abs(synops_ours - synops_theirs) / max(1.0, synops_ours)}
