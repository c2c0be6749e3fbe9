// Learning-rate schedules of the reference (torch CosineAnnealingLR, or none). Pure arithmetic: the
// trainer decides when the scheduler steps (after each non-frozen epoch).

export interface CosineSchedule {
  type: "cosine";
  t_max: number;
  eta_min: number;
}

/**
 * lr after `stepsTaken` scheduler steps, closed form: eta_min + (lr0 - eta_min)(1 + cos(pi k / T_max)) / 2.
 * With T_max 15 and lr0 1e-3 the factors of training epochs 1..10 are 1, 0.989074, ..., 0.345492 (§2.5).
 */
export function lrAt(lr0: number, schedule: CosineSchedule | null, stepsTaken: number): number {
  if (!schedule) return lr0;
  const { t_max, eta_min } = schedule;
  return eta_min + ((lr0 - eta_min) * (1 + Math.cos((Math.PI * stepsTaken) / t_max))) / 2;
}
