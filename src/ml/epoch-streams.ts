// The random streams of a training epoch and the draws the steps take from them (the active heads,
// the A2D reference head). Owns their seeds and the order of draws, which results depend on bit for bit.
import { Rng, type RngState } from "../rng.ts";

/** Independent per-epoch streams: 1 pair selection, 2 A2D reference head, 3 shuffling, 4 reference head of the val loss. */
export function epochStream(seed: number, stream: 1 | 2 | 3 | 4): Rng {
  return new Rng((Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(stream, 0x85ebca77)) >>> 0);
}

/** The streams the steps of an epoch draw from (the val loss's stream is drawn by the validation). */
export interface EpochStreams {
  pair: Rng;
  ref: Rng;
  shuffle: Rng;
}

export function epochStreams(seed: number): EpochStreams {
  return { pair: epochStream(seed, 1), ref: epochStream(seed, 2), shuffle: epochStream(seed, 3) };
}

/** One step's draw: `active` of the `heads` heads, ascending, and the A2D reference's position among them. */
export function drawStep(s: EpochStreams, heads: number, active: number, computeRepulsion: boolean): { active: number[]; ref: number } {
  const picked = s.pair.sample(heads, active).sort((a, c) => a - c);
  return { active: picked, ref: computeRepulsion ? s.ref.int(active) : 0 };
}

/** The streams' states, as a checkpoint records them. */
export function streamStates(s: EpochStreams): Record<string, RngState> {
  return { pair: s.pair.state(), ref: s.ref.state(), shuffle: s.shuffle.state() };
}
