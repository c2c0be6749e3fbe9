// Lists image datasets on disk in a fixed order: torchvision ImageFolder (classes = sorted folder
// names, files sorted within a class, recursive) and single-folder OOD sets (all label 0). Reads
// no pixels; decoding lives in src/io/images.ts.
import { readdir, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { InputError } from "../errors.ts";

export type ImageLayout = "imagefolder" | "single-folder";

export interface ImageItem {
  file: string;
  label: number;
}

export interface ImageList {
  root: string;
  /** Class names in label order (imagefolder); [] for single-folder. */
  classes: string[];
  items: ImageItem[];
}

/** torchvision's IMG_EXTENSIONS: these count as images (matched case-insensitively). */
export const IMAGE_EXTENSIONS = [".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"];

export function isImageFile(name: string): boolean {
  const n = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((e) => n.endsWith(e));
}

// Python sorts str by code point; JS's default sort compares UTF-16 code units, which differs only
// for characters outside the BMP. Compare code points to match os.walk + sorted() exactly.
function byCodePoint(a: string, b: string): number {
  const A = [...a];
  const B = [...b];
  for (let i = 0; i < Math.min(A.length, B.length); i++) {
    const d = A[i].codePointAt(0)! - B[i].codePointAt(0)!;
    if (d !== 0) return d;
  }
  return A.length - B.length;
}

async function listDir(dir: string): Promise<import("node:fs").Dirent[]> {
  try {
    return await readdir(dir, { withFileTypes: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new InputError(`${dir}: cannot list image folder (${code ?? (err as Error).message})`, {
      hint: code === "ENOENT" ? "run the download stage first, or fix the dataset's `images` path" : undefined,
    });
  }
}

/** All image files under `dir`, recursively, in torchvision's order (sorted dirs, sorted names). */
async function walkImages(dir: string): Promise<string[]> {
  const entries = (await listDir(dir)).sort((a, b) => byCodePoint(a.name, b.name));
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const s = await stat(p).catch(() => null);
      isDir = !!s?.isDirectory();
      isFile = !!s?.isFile();
    }
    if (isDir) out.push(...(await walkImages(p)));
    else if (isFile && isImageFile(e.name)) out.push(p);
  }
  return out;
}

/** Lists a dataset. Empty classes or an empty folder are errors naming the folder. */
export async function listImages(root: string, layout: ImageLayout): Promise<ImageList> {
  const s = await stat(root).catch(() => null);
  if (!s) {
    throw new InputError(`${root}: image folder does not exist`, { hint: "run the download stage first, or fix the dataset's `images` path" });
  }
  if (!s.isDirectory()) throw new InputError(`${root}: expected a folder of images, found a file`);
  if (layout === "single-folder") {
    const files = await walkImages(root);
    if (files.length === 0) {
      throw new InputError(`${root}: no images found (looked for ${IMAGE_EXTENSIONS.join(" ")})`);
    }
    return { root, classes: [], items: files.map((file) => ({ file, label: 0 })) };
  }
  if (layout !== "imagefolder") {
    throw new InputError(`${root}: unknown layout "${String(layout)}"`, { hint: "use layout: imagefolder or single-folder" });
  }
  const entries = await listDir(root);
  const classes: string[] = [];
  for (const e of entries) {
    if (e.isDirectory() || (e.isSymbolicLink() && (await stat(join(root, e.name)).catch(() => null))?.isDirectory())) classes.push(e.name);
  }
  classes.sort(byCodePoint);
  if (classes.length === 0) {
    throw new InputError(`${root}: no class folders found (ImageFolder layout expects <root>/<class>/<image>)`, {
      hint: "for a flat folder of images use layout: single-folder",
    });
  }
  const items: ImageItem[] = [];
  const empty: string[] = [];
  for (let label = 0; label < classes.length; label++) {
    const files = await walkImages(join(root, classes[label]));
    if (files.length === 0) empty.push(classes[label]);
    for (const file of files) items.push({ file, label });
  }
  if (empty.length) {
    throw new InputError(
      `${root}: ${empty.length} class folder(s) hold no images: ${empty.slice(0, 10).join(", ")}${empty.length > 10 ? ", ..." : ""}`,
      { hint: "every class folder needs at least one image (torchvision ImageFolder refuses empty classes too)" },
    );
  }
  return { root, classes, items };
}

export function relativeName(list: ImageList, file: string): string {
  return relative(list.root, file);
}
