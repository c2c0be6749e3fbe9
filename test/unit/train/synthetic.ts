// Synthetic class-cluster features for trainer tests (not a test suite itself).
import { Rng } from "../../../src/rng.ts";

export function clusters(rows: number, dim: number, classes: number, seed: number, noise = 0.5, sampleSeed = seed + 1000): { embed: Float32Array; label: Int32Array } {
  const rng = new Rng(seed);
  const centers = Array.from({ length: classes }, () => Float32Array.from({ length: dim }, () => rng.normal()));
  const cr = new Rng(sampleSeed);
  const embed = new Float32Array(rows * dim);
  const label = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const y = cr.int(classes);
    label[i] = y;
    for (let d = 0; d < dim; d++) embed[i * dim + d] = centers[y][d] + noise * cr.normal();
  }
  return { embed, label };
}
