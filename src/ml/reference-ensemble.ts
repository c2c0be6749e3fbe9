// Reads the reference's pickled full training checkpoints (`50_models.pkl`, ...: a dict whose `model`
// entry is a pickled `RedneckEnsemble` nn.Module, reference §2.8/§7) into EnsembleArrays by taking each
// head's `submodels.<i>.*` tensors. Never runs Python; never touches optimizer or criterion state.
import { InputError } from "../errors.ts";
import { collectTensors, openTorchCheckpoint, type TorchTensor } from "../io/torch-checkpoint.ts";
import { DEFAULT_LN_EPS, HEAD_PARAM_NAMES, headParamShapes, type EnsembleArrays, type HeadArrays, type HeadShape } from "./heads.ts";

const HINT = "expected a reference SED checkpoint (torch.save of a dict with `model` = RedneckEnsemble, or its state dict)";

/** `submodels.<i>.<param>` tensors of a RedneckEnsemble module tree or state dict, grouped by head. */
export function groupSubmodelTensors(file: string, tensors: Map<string, TorchTensor>): Map<number, Map<string, TorchTensor>> {
  const heads = new Map<number, Map<string, TorchTensor>>();
  for (const [key, t] of tensors) {
    const m = /^(?:model\.)?submodels\.(\d+)\.(.+)$/.exec(key);
    if (!m) continue;
    const i = Number(m[1]);
    if (!heads.has(i)) heads.set(i, new Map());
    heads.get(i)!.set(m[2], t);
  }
  if (heads.size === 0) throw new InputError(`${file}: no "submodels.<i>.*" tensors found`, { hint: HINT });
  const n = heads.size;
  for (let i = 0; i < n; i++) if (!heads.has(i)) throw new InputError(`${file}: head indices are not 0..${n - 1} (head ${i} missing)`, { hint: HINT });
  return heads;
}

export async function loadReferenceEnsemble(file: string): Promise<EnsembleArrays> {
  const ckpt = await openTorchCheckpoint(file);
  try {
    const root = ckpt.root as Record<string, unknown> | null;
    // A full checkpoint dict holds the module under `model`; anything else is walked as a state dict.
    const node = root && typeof root === "object" && "model" in root ? root.model : root;
    const heads = groupSubmodelTensors(file, collectTensors(node));
    const first = heads.get(0)!;
    const need = (name: string): TorchTensor => {
      const t = first.get(name);
      if (!t) throw new InputError(`${file}: head 0 lacks "${name}"`, { hint: HINT });
      return t;
    };
    const shape: HeadShape = {
      dim: need("gamma_2").shape[0],
      hidden: need("mlp.fc1.weight").shape[0],
      classes: need("head.weight").shape[0],
      eps: DEFAULT_LN_EPS,
    };
    const shapes = headParamShapes(shape);
    const out: HeadArrays[] = [];
    for (let i = 0; i < heads.size; i++) {
      const h = heads.get(i)!;
      const arrays = {} as HeadArrays;
      for (const k of HEAD_PARAM_NAMES) {
        const t = h.get(k);
        if (!t) throw new InputError(`${file}: head ${i} lacks "submodels.${i}.${k}"`, { hint: HINT });
        if (t.shape.join(",") !== shapes[k].join(",")) {
          throw new InputError(`${file}: "submodels.${i}.${k}" has shape [${t.shape}], expected [${shapes[k]}] (heads must share one shape)`, { hint: HINT });
        }
        arrays[k] = await t.readFloat32();
      }
      out.push(arrays);
    }
    return { shape, heads: out, meta: { source: file, format_in: "reference-pkl" } };
  } finally {
    await ckpt.close();
  }
}
