// The published SED result tables, transcribed from the reference repository's result_tables/
// filled_ood_gen_df.csv and filled_ood_det_df.csv (sed-reference.md §8.2 and §8.3; accuracies in %,
// AUROCs in [0, 1]; models keyed by the reference's result prefixes). Data only.

export const PUBLISHED_SOURCE =
  "diverse-universe-public result_tables/filled_ood_gen_df.csv and filled_ood_det_df.csv (sed-reference.md §8.2, §8.3)";

export const OOD_GEN_COLUMNS = ["in_val", "imagenet_a", "imagenet_r", "C-1", "C-5", "iNaturalist", "OpenImages"] as const;
export const OOD_GEN_METRICS = ["best_single_model", "ensemble", "soup", "div_different_preds", "div_continous_unique"] as const;
export const OOD_DET_COLUMNS = ["C-1", "C-5", "iNaturalist", "OpenImages"] as const;
export const OOD_DET_METRICS = ["ensemble_conf", "div_continous_unique_per_sample"] as const;

type Row = readonly number[];

/** §8.2: model -> metric -> values in OOD_GEN_COLUMNS order. */
export const PUBLISHED_OOD_GEN: Readonly<Record<string, Readonly<Record<(typeof OOD_GEN_METRICS)[number], Row>>>> = {
  "50_models_": {
    best_single_model: [82.864, 39.08, 46.103333333, 74.8564, 38.605466667, 0.01, 0.005671506],
    ensemble: [83.638, 50.573333333, 53.776666667, 75.848, 39.334266667, 0.0, 0.0],
    soup: [83.632, 39.386666667, 46.493333333, 75.847733333, 39.3344, 0.0, 0.0],
    div_different_preds: [1.422064939, 1.659397163, 1.440831557, 1.672792706, 3.061021806, 4.069189297, 3.26792196],
    div_continous_unique: [1.659575074, 0.955230497, 0.806736407, 1.695970317, 1.847314505, 1.944509576, 1.861932954],
  },
  ood_det_cov_: {
    best_single_model: [0.57, 1.04, 0.36, 0.3592, 0.184933333, 0.0, 0.0],
    ensemble: [85.33, 0.346666667, 0.813333333, 77.287733333, 40.432266667, 0.0, 0.0],
    soup: [85.008, 37.48, 44.73, 76.969466667, 39.539466667, 0.0, 0.0],
    div_different_preds: [4.99922025, 4.000664894, 2.006363273, 4.99992669, 4.999973342, 5.0, 5.0],
    div_continous_unique: [3.971466654, 3.000664894, 1.006363273, 4.146197093, 4.456252408, 4.445718671, 4.419946542],
  },
  ood_det_sem_: {
    best_single_model: [82.584, 25.666666667, 36.493333333, 70.837066667, 29.5608, 0.0, 0.0],
    ensemble: [85.238, 29.146666667, 39.05, 77.0508, 40.303466667, 0.0, 0.0],
    soup: [84.506, 37.2, 44.126666667, 76.037466667, 39.8244, 0.0, 0.0],
    div_different_preds: [1.361564299, 1.708865248, 1.620302505, 1.856867136, 3.590507038, 4.694888179, 4.14740245],
    div_continous_unique: [1.496026627, 0.93337766, 0.946561834, 1.919644261, 3.270468747, 4.124960108, 3.600271624],
  },
  ood_gen_: {
    best_single_model: [85.104, 39.386666667, 46.033333333, 76.995466667, 40.370666667, 0.0, 0.0],
    ensemble: [85.278, 42.973333333, 48.7, 77.312, 40.657066667, 0.0, 0.0],
    soup: [85.246, 38.32, 45.88, 77.2668, 40.541466667, 0.0, 0.0],
    div_different_preds: [1.098828375, 1.20625, 1.117803838, 1.163839571, 1.472268874, 1.709365016, 1.52688294],
    div_continous_unique: [1.203885154, 0.650797872, 0.590884861, 1.232279481, 1.294610191, 1.303055459, 1.285948063],
  },
};

/** §8.3: model -> column -> [ensemble_conf AUROC, PDS AUROC]. */
export const PUBLISHED_OOD_DET: Readonly<Record<string, Readonly<Record<(typeof OOD_DET_COLUMNS)[number], readonly [number, number]>>>> = {
  "50_models_": { "C-1": [0.531041091, 0.598791859], "C-5": [0.746815425, 0.825126241], iNaturalist: [0.876540691, 0.935988817], OpenImages: [0.8602963, 0.880990268] },
  ood_det_cov_: { "C-1": [0.587397935, 0.681416445], "C-5": [0.832400575, 0.894231275], iNaturalist: [0.957503872, 0.932022101], OpenImages: [0.906018741, 0.911738135] },
  ood_det_sem_: { "C-1": [0.591566352, 0.662001121], "C-5": [0.810458294, 0.879476941], iNaturalist: [0.92279102, 0.976582558], OpenImages: [0.860573236, 0.941367381] },
  ood_gen_: { "C-1": [0.583268331, 0.602165629], "C-5": [0.82099281, 0.806678869], iNaturalist: [0.956275628, 0.856332394], OpenImages: [0.907213764, 0.811478703] },
};

/** Published value of one cell, or undefined when the reference has no such cell. */
export function publishedValue(table: "ood_gen" | "ood_det", model: string, metric: string, column: string): number | undefined {
  if (table === "ood_gen") {
    const ci = (OOD_GEN_COLUMNS as readonly string[]).indexOf(column);
    const row = PUBLISHED_OOD_GEN[model]?.[metric as (typeof OOD_GEN_METRICS)[number]];
    return ci >= 0 && row ? row[ci] : undefined;
  }
  const mi = (OOD_DET_METRICS as readonly string[]).indexOf(metric);
  const cell = PUBLISHED_OOD_DET[model]?.[column as (typeof OOD_DET_COLUMNS)[number]];
  return mi >= 0 && cell ? cell[mi] : undefined;
}
