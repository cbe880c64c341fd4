// The per-neuron update of one time step (SEMANTICS.md, "One step of a
// spiking layer"), written once for the CPU and the CUDA backends. All
// arithmetic is float32 and matches the numpy reference operation by
// operation; no multiply-add pairs exist here, so FMA contraction cannot
// change a result.
#pragma once

#include <cmath>

#include "common.h"

namespace ttfs {

// Scalars of one step, computed once on the host as SEMANTICS.md defines them.
struct StepConstants {
  float tau;         // t * dt
  float dt;          // output signal of a neuron that has fired
  float v0;          // base threshold
  float refrac_end;  // tau + tau_refrac
  float leak_step;   // 0.1 * dt
  bool leak;
};

// SEMANTICS.md "Arithmetic": tau = f32(t) * f32(dt), R = tau + f32(tau_refrac),
// leak step = f32(0.1) * f32(dt); the same on every backend.
TTFS_HD StepConstants step_constants(int t, float dt, float v_thresh, float tau_refrac, bool leak) {
  StepConstants k;
  k.tau = mul_rn(float(t), dt);
  k.dt = dt;
  k.v0 = v_thresh;
  k.refrac_end = add_rn(k.tau, tau_refrac);
  k.leak_step = mul_rn(0.1f, dt);
  k.leak = leak;
  return k;
}

// Steps 3-4: refractory mask, integrate, leak. Returns the new membrane V'.
TTFS_HD float integrate(float current, float membrane, float refrac_until,
                        const StepConstants& k) {
  const float masked = refrac_until > k.tau ? 0.0f : current;
  const float v = membrane + masked;
  return (k.leak & (v > 0.0f)) ? v - k.leak_step : v;  // non-short-circuit: vectorises
}

// Steps 3-11 for a ReLU neuron. `current` is I (already 0 while the sample's
// input is silent), `missing` is M of this step. Returns true if it spiked.
TTFS_HD bool ttfs_neuron_step(float current, float missing, const StepConstants& k,
                              float& membrane, float& threshold, float& refrac_until,
                              float& last_spike, float& prospective) {
  const float v = integrate(current, membrane, refrac_until, k);
  const bool spiked = v >= threshold;   // 5: threshold left by the previous step
  membrane = spiked ? 0.0f : v;         // 6: reset
  // Selects rather than branches, so that the CPU loop over a layer vectorises.
  refrac_until = spiked ? k.refrac_end : refrac_until;  // 7
  last_spike = spiked ? k.tau : last_spike;             // 11
  // 9: prospective flag uses the new refractory end
  prospective = ((current > 0.0f) & (refrac_until <= k.tau)) ? 1.0f : 0.0f;
  threshold = k.v0 + missing;           // 10: threshold for the next step
  return spiked;
}

// A ReLU neuron that fired and stays refractory past the last step (its R =
// tau_s + tau_refrac, as step 7 computes it, beyond `end_tau`, the tau of
// the last step) is done for the run: its membrane stays 0 below threshold
// and its outputs stay as they are, so it needs no more input or updates.
// `last_spike` > 0 once it fired (the engines store "never" as -1 or 0).
TTFS_HD bool neuron_done_for_run(float last_spike, float tau_refrac, float end_tau) {
  return last_spike > 0.0f && add_rn(last_spike, tau_refrac) > end_tau;
}

// Step 11's output signal: dt once the neuron has fired.
TTFS_HD float relu_signal(float last_spike, float dt) { return last_spike > 0.0f ? dt : 0.0f; }

// Steps 9-10 for a softmax output neuron (no reset, no refractory update);
// the spike itself is decided by the caller from the layer's softmax.
TTFS_HD void softmax_neuron_flags(float current, float missing, const StepConstants& k,
                                  float refrac_until, float& threshold, float& prospective) {
  prospective = ((current > 0.0f) & (refrac_until <= k.tau)) ? 1.0f : 0.0f;
  threshold = k.v0 + missing;
}

// MaxPooling2D (no membrane): record where (m > 0) xor (S > 0) with S before
// the update, then S = tau where m != 0. Returns true if recorded.
TTFS_HD bool maxpool_step(float m, float tau, float& last_spike) {
  const bool record = (m > 0.0f) != (last_spike > 0.0f);
  if (m != 0.0f) last_spike = tau;
  return record;
}

// ---- The ttfs-window coding (docs/WINDOW_SEMANTICS.md) ----

// "Input": the level of input value x, k = clip(floor(f64(x) * g + 1/2), 0, S_0)
// with g = f64(S_0) / f64(X_0), multiply then add (no fused multiply-add).
TTFS_HD int window_input_level(float x, double gain, int input_steps) {
  const double level = floor(dadd_rn(dmul_rn(double(x), gain), 0.5));
  return level <= 0.0 ? 0 : level >= double(input_steps) ? input_steps : int(level);
}

// "One step of a windowed layer" for a neuron at step t: W, R its layer's
// window start and end, d = D(t) (0 without arrivals), theta its threshold;
// V the membrane, I the slope, s the spike step (0: not fired). Returns true
// if it fires at t. Selects rather than branches, so the CPU loop vectorises.
TTFS_HD bool window_neuron_step(int t, int W, int R, float d, float theta, bool zero_spikes, float& V,
                                float& I, int& s) {
  V = add_rn(V, I);                                   // 1
  I = t >= W ? 1.0f : add_rn(I, d);                   // 2
  const bool fire = (t >= W) & (s == 0) & ((V >= theta) | (zero_spikes & (t == R)));
  s = fire ? t : s;                                   // 3
  return fire;
}

// The output layer before its read step: steps 1-2 without slope 1 or firing.
TTFS_HD void window_output_step(float d, float& V, float& I) {
  V = add_rn(V, I);
  I = add_rn(I, d);
}

// The output read at R_out (after window_output_step of that step): y = V + b_o.
TTFS_HD float window_output_value(float V, float bias) { return add_rn(V, bias); }

// D(t) of an average-pooling neuron: f32(f64(arrivals, ON minus OFF) * f64(w_i)).
TTFS_HD float window_pool_increment(double arrivals, float weight) {
  return float(dmul_rn(arrivals, double(weight)));
}

}  // namespace ttfs
