#include "engine.h"

#include <stdexcept>
#include <string>

namespace ttfs {

void Engine::check_run(const Input& in, const Results& out) const {
  if (in.samples < 0 || in.sample_offset < 0 || (in.samples > 0 && !in.data))
    throw std::invalid_argument("run: invalid input view");
  if (in.sample_offset + in.samples > out.rows)
    throw std::invalid_argument("run: samples " + std::to_string(in.sample_offset) + ".." +
                                std::to_string(in.sample_offset + in.samples) + " do not fit the " +
                                std::to_string(out.rows) + " rows of the results");
  const size_t recorded = config_.record_spike_times ? net_.spiking_nodes().size() : 0;
  if (out.first_spike.size() != recorded)
    throw std::invalid_argument(config_.record_spike_times
                                    ? "run: one first-spike array per spiking layer"
                                    : "run: this engine does not record first-spike times");
}

}  // namespace ttfs
