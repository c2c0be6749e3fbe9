// Positional reads that fill a caller's buffer in bounded chunks. Owns nothing else: the formats
// (torch zip, safetensors) decide what to read where.
import type { FileHandle } from "node:fs/promises";
import { InputError } from "../errors.ts";

/**
 * One fs read may move at most 2 GiB - 1 bytes (Node's kIoMaxLength) and may return short, so
 * every read of a tensor or storage goes through here in chunks of at most this many bytes.
 */
export const READ_CHUNK_BYTES = 256 * 1024 * 1024;

/** Fills `out` from the file at `position`; a file that ends early is an InputError naming `source`. */
export async function readFullyAt(fh: FileHandle, out: Uint8Array, position: number, source: string, chunkBytes = READ_CHUNK_BYTES): Promise<void> {
  let done = 0;
  while (done < out.byteLength) {
    const want = Math.min(chunkBytes, out.byteLength - done);
    const { bytesRead } = await fh.read(out, done, want, position + done);
    if (bytesRead === 0) {
      throw new InputError(`${source}: truncated (needed ${out.byteLength} bytes at offset ${position}, the file ends after ${done})`, {
        hint: "the file is incomplete; re-create or re-download it",
      });
    }
    done += bytesRead;
  }
}
