// Settings for StageContexts that unit tests build by hand (one core, one BLAS thread, head threads
// decided by size, OpenBLAS kernels on where the addon loads).
import type { StageSettings } from "../../src/stage-api.ts";

export const TEST_SETTINGS: StageSettings = Object.freeze({ cores: 1, blasThreads: 1, headThreads: null, blas: true });
