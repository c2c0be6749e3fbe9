import { test } from "uvu";
import * as assert from "uvu/assert";
import {
  blake2b80Hex,
  PyFloat,
  pythonFloatRepr,
  pythonRepr,
  referenceFeatureFileName,
  referenceFeatureObject,
  referenceHash,
} from "../../../src/hash/reference-name.ts";

const LUSTRE = "/mnt/lustre/work/oh/arubinstein17/github/diverse-universe-public/models/deit3/deit_3_base_224_21k.pth";

test("section 5.2: the hashed object's repr is byte-exact (210 bytes)", () => {
  const repr = pythonRepr(referenceFeatureObject({ modelPath: LUSTRE, datasetKey: "Brightness_1" }));
  assert.is(repr, `{'type': 'torch_load', 'torch_load': {'path': '${LUSTRE}', 'model_name': 'deit3_21k'}, 'dataset_type': 'Brightness_1'}`);
  assert.is(Buffer.byteLength(repr, "utf8"), 210);
});

test("section 5.2 test vectors", () => {
  const obj = (key: string, path = LUSTRE) => referenceFeatureObject({ modelPath: path, datasetKey: key });
  assert.is(referenceHash(obj("Brightness_1")), "4c905e75df34398dcc32");
  assert.is(referenceHash(obj("Brightness_5")), "ef1173603b558d0a45ac");
  assert.is(referenceHash(obj("Defocus Blur_1")), "17f72b4737ec07ba4bd6");
  assert.is(referenceHash(".//result_sheets/training.csv"), "21313317ace45f6d49ba");
  assert.is(referenceHash(".//result_sheets/evaluation.csv"), "7219e2e5c19446499e37");
  assert.is(referenceHash(".//result_sheets/caching.csv"), "31ae6c7baf7c8ccd6a72");
  assert.is(blake2b80Hex(new Uint8Array(0)), "6fa1d8fcfd719046d762");
  assert.is(referenceHash(obj("Brightness_1", "./models/deit3/deit_3_base_224_21k.pth")), "229dfa08b82104a48cba");
  // A truncated 64-byte digest is NOT what the reference does.
  assert.is.not(referenceHash(obj("Brightness_1")), "6c50862e2e217066a866");
});

test("section 5.3: all 30 ImageNet-C hashes", () => {
  const table: Record<string, [string, string]> = {
    Brightness: ["4c905e75df34398dcc32", "ef1173603b558d0a45ac"],
    Contrast: ["06f60745c654a9520111", "54d0f994faaa377581e1"],
    "Defocus Blur": ["17f72b4737ec07ba4bd6", "7f3110448c3ed8d9358e"],
    "Elastic Transform": ["acf79ca55ab4d737e110", "e66b8c8ee6c13c5ae3f2"],
    Fog: ["a53af9339a7f1b0b0cff", "26ec818e0e1aead12d19"],
    Frost: ["212c00d15df5bb8f6ee3", "8966e493e280bdd3f429"],
    "Gaussian Noise": ["bfcca316bfafcb81b0fb", "bd673de597fcc458c6a8"],
    "Glass Blur": ["6c9e90c11ce99d332547", "2ba45b43aeadbbebc5cf"],
    "Impulse Noise": ["89c69318456d3562dec5", "23e3b3a61c287e4faccf"],
    "JPEG Compression": ["01249fa5a2fefca8df44", "9df87ead629ce19e8382"],
    "Motion Blur": ["97b8fb397256779609f6", "9b039bf01d50d7da9fc3"],
    Pixelate: ["e79420e9ba75df1c85f4", "9dfdc488399ede57caae"],
    "Shot Noise": ["caa167b4008437dfcb14", "d25ecb59430dcdc330ad"],
    Snow: ["3bceaf6152ba08e6b53f", "f245dd6976ed846f2e98"],
    "Zoom Blur": ["80ceeb0cf71e8b72e411", "3f50303a2e87f30cba0c"],
  };
  let checked = 0;
  for (const [name, [h1, h5]] of Object.entries(table)) {
    for (const [sev, want] of [[1, h1], [5, h5]] as const) {
      const key = `${name}_${sev}`;
      const file = referenceFeatureFileName({ modelPath: LUSTRE, datasetKey: key, samples: 50000 });
      assert.is(file, `${want}_torch_load_block_-1_model_${key}_dataset_1_epochs_50000_samples.hdf5`, key);
      checked++;
    }
  }
  assert.is(checked, 30);
});

test("file name: explicit epochs, block, model name", () => {
  const name = referenceFeatureFileName({ modelPath: "/m.pth", modelName: "vit_tiny_demo", datasetKey: "Pixelate_5", epochs: 2, samples: 800, blockId: 3 });
  const hash = referenceHash(new Map<string, any>([["type", "torch_load"], ["torch_load", new Map([["path", "/m.pth"], ["model_name", "vit_tiny_demo"]])], ["dataset_type", "Pixelate_5"]]));
  assert.is(name, `${hash}_torch_load_block_3_model_Pixelate_5_dataset_2_epochs_800_samples.hdf5`);
});

test("repr: str quoting and escapes follow CPython", () => {
  // Expected strings produced by CPython 3.11 repr().
  assert.is(pythonRepr("it's"), `"it's"`);
  assert.is(pythonRepr(`a"b'c`), `'a"b\\'c'`);
  assert.is(pythonRepr('"'), `'"'`);
  assert.is(pythonRepr("back\\slash"), `'back\\\\slash'`);
  assert.is(pythonRepr("\t\n\r\x00\x7f"), `'\\t\\n\\r\\x00\\x7f'`);
  assert.is(pythonRepr("é\u00a0\u0080\u00ad\u200b\u2028\ue000 😀"), `'é\\xa0\\x80\\xad\\u200b\\u2028\\ue000 😀'`);
  assert.is(pythonRepr(""), "''");
});

test("repr: ints, floats, None, booleans, tuples, lists, dicts", () => {
  assert.is(pythonRepr({ a: { tuple: [1] }, b: [true, null, new PyFloat(1)], c: { tuple: [] }, d: { tuple: [1, "x"] } }), "{'a': (1,), 'b': [True, None, 1.0], 'c': (), 'd': (1, 'x')}");
  assert.is(pythonRepr(new Map([["tuple", [1]]])), "{'tuple': [1]}");
  assert.is(pythonRepr([1, -3, 2 ** 60, 0]), "[1, -3, 1152921504606846976, 0]");
  assert.is(pythonRepr({}), "{}");
  assert.is(referenceHash({ a: { tuple: [1] }, b: [true, null, new PyFloat(1)] }), "7c7b9a9ec43325707512");
  assert.is(referenceHash("é"), "165c607dffbb04dfcfa2");
});

test("repr: floats match CPython's shortest repr", () => {
  // [value, CPython repr(value)]
  const vectors: Array<[number, string]> = [
    [1.0, "1.0"], [0.1, "0.1"], [1e-5, "1e-05"], [0.0001, "0.0001"], [9.999e-5, "9.999e-05"], [1e16, "1e+16"],
    [1000000000000000.5, "1000000000000000.5"], [123456789012345.6, "123456789012345.6"],
    [1.7976931348623157e308, "1.7976931348623157e+308"], [5e-324, "5e-324"], [-2.5e-7, "-2.5e-07"],
    [0.30000000000000004, "0.30000000000000004"], [2.5, "2.5"], [1e22, "1e+22"], [-0, "-0.0"], [100, "100.0"],
    [1.5e300, "1.5e+300"], [3.14159, "3.14159"], [Infinity, "inf"], [-Infinity, "-inf"], [NaN, "nan"],
  ];
  for (const [x, want] of vectors) assert.is(pythonFloatRepr(x), want, String(x));
  assert.is(pythonRepr(0.5), "0.5");
  assert.is(pythonRepr(new PyFloat(1e16)), "1e+16");
});

test.run();
