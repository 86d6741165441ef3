/**
 * Minimal GGUF v3 writer (and a small header reader for checks).
 *
 * Layout (all little-endian):
 *   magic "GGUF" | version u32 = 3 | tensor_count u64 | kv_count u64
 *   kv_count × (key: gguf string, value_type u32, value)
 *   tensor_count × (name: gguf string, n_dims u32, dims u64[n_dims], ggml_type u32, offset u64)
 *   padding to `general.alignment`
 *   tensor data, each tensor starting at a multiple of the alignment (offsets are
 *   relative to the start of the data section) and padded to it.
 * A gguf string is a u64 byte length followed by UTF-8 bytes, no terminator.
 *
 * Files are written to a temporary name in the same folder and renamed into
 * place once complete, so a crash never leaves a partial file at `path`.
 */

import { randomBytes } from "node:crypto";
import { open, rename, unlink, type FileHandle } from "node:fs/promises";
import { endianness } from "node:os";
import { basename, dirname, join } from "node:path";

export const GGUF_MAGIC = "GGUF";
export const GGUF_VERSION = 3;
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** `gguf_type` codes. */
export const GgufValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

/** `ggml_type` codes of the tensor types this writer supports. */
export const GgmlType = { F32: 0, F16: 1 } as const;
export type GgufTensorType = "f32" | "f16";

export type GgufValue =
  | { readonly type: "uint32"; readonly value: number }
  | { readonly type: "int32"; readonly value: number }
  | { readonly type: "uint64"; readonly value: bigint }
  | { readonly type: "float32"; readonly value: number }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "array"; readonly itemType: "string"; readonly value: readonly string[] }
  | { readonly type: "array"; readonly itemType: "int32" | "uint32" | "float32"; readonly value: ArrayLike<number> };

/** Constructors for {@link GgufValue}s. */
export const gguf = {
  uint32: (value: number): GgufValue => ({ type: "uint32", value }),
  int32: (value: number): GgufValue => ({ type: "int32", value }),
  uint64: (value: bigint): GgufValue => ({ type: "uint64", value }),
  float32: (value: number): GgufValue => ({ type: "float32", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  string: (value: string): GgufValue => ({ type: "string", value }),
  stringArray: (value: readonly string[]): GgufValue => ({ type: "array", itemType: "string", value }),
  int32Array: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "int32", value }),
  uint32Array: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "uint32", value }),
  float32Array: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "float32", value }),
};

export interface GgufTensor {
  readonly name: string;
  /** ggml order: `shape[0]` is the innermost (contiguous) dimension. */
  readonly shape: readonly number[];
  readonly type: GgufTensorType;
  /**
   * Element values in memory order (`shape[0]` fastest), stored as F32 or
   * converted to F16. A function is called only when the tensor is written, so
   * large models never hold all their weights in memory at once.
   */
  readonly data: Float32Array | (() => Float32Array);
}

export interface GgufFile {
  /** Metadata in the order to write it. `general.alignment` is added if absent. */
  readonly metadata: Readonly<Record<string, GgufValue>>;
  readonly tensors: readonly GgufTensor[];
}

export interface WriteGgufOptions {
  /** Power of two; default 32. Written as `general.alignment`. */
  readonly alignment?: number;
}

const TYPE_CODE = {
  uint32: GgufValueType.UINT32,
  int32: GgufValueType.INT32,
  uint64: GgufValueType.UINT64,
  float32: GgufValueType.FLOAT32,
  bool: GgufValueType.BOOL,
  string: GgufValueType.STRING,
} as const;

/** Growable little-endian byte buffer. */
class ByteSink {
  private buffer = Buffer.allocUnsafe(64 * 1024);
  length = 0;

  private reserve(n: number): void {
    if (this.length + n <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buffer.copy(next, 0, 0, this.length);
    this.buffer = next;
  }

  u8(v: number): void {
    this.reserve(1);
    this.buffer.writeUInt8(v, this.length);
    this.length += 1;
  }
  u32(v: number): void {
    this.reserve(4);
    this.buffer.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.reserve(4);
    this.buffer.writeInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: bigint | number): void {
    this.reserve(8);
    this.buffer.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  f32(v: number): void {
    this.reserve(4);
    this.buffer.writeFloatLE(v, this.length);
    this.length += 4;
  }
  string(s: string): void {
    const n = Buffer.byteLength(s, "utf8");
    this.u64(n);
    this.reserve(n);
    this.buffer.write(s, this.length, n, "utf8");
    this.length += n;
  }
  zeros(n: number): void {
    this.reserve(n);
    this.buffer.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buffer.subarray(0, this.length);
  }
}

function checkInteger(key: string, v: number, min: number, max: number): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`GGUF value of ${key} out of range: ${v}`);
}

function writeValue(sink: ByteSink, key: string, value: GgufValue): void {
  if (value.type === "array") {
    sink.u32(GgufValueType.ARRAY);
    if (value.itemType === "string") {
      sink.u32(GgufValueType.STRING);
      sink.u64(value.value.length);
      for (const item of value.value) sink.string(item);
      return;
    }
    const numbers = value.value;
    sink.u32(TYPE_CODE[value.itemType]);
    sink.u64(numbers.length);
    for (let i = 0; i < numbers.length; i++) {
      const n = numbers[i]!;
      if (value.itemType === "int32") {
        checkInteger(key, n, -0x8000_0000, 0x7fff_ffff);
        sink.i32(n);
      } else if (value.itemType === "uint32") {
        checkInteger(key, n, 0, 0xffff_ffff);
        sink.u32(n);
      } else sink.f32(n);
    }
    return;
  }
  sink.u32(TYPE_CODE[value.type]);
  switch (value.type) {
    case "uint32":
      checkInteger(key, value.value, 0, 0xffff_ffff);
      sink.u32(value.value);
      break;
    case "int32":
      checkInteger(key, value.value, -0x8000_0000, 0x7fff_ffff);
      sink.i32(value.value);
      break;
    case "uint64":
      if (value.value < 0n || value.value >= 1n << 64n) throw new RangeError(`GGUF value of ${key} out of range`);
      sink.u64(value.value);
      break;
    case "float32":
      sink.f32(value.value);
      break;
    case "bool":
      sink.u8(value.value ? 1 : 0);
      break;
    case "string":
      sink.string(value.value);
      break;
  }
}

const BYTES_PER_ELEMENT: Record<GgufTensorType, number> = { f32: 4, f16: 2 };

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function padTo(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE 754 binary32 → binary16 bits, rounding to nearest even. */
export function float32ToFloat16Bits(value: number): number {
  f32Scratch[0] = value;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7f_ffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0); // inf / nan
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow → inf
  if (e <= 0) {
    // subnormal half (or zero)
    if (e < -10) return sign;
    mantissa |= 0x80_0000;
    const shift = 14 - e;
    let half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) !== 0)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) !== 0)) half++; // a carry into the exponent is correct
  return sign | half;
}

function tensorBytes(tensor: GgufTensor, values: Float32Array): Buffer {
  if (tensor.type === "f32") {
    if (endianness() !== "LE") {
      const out = Buffer.allocUnsafe(values.length * 4);
      for (let i = 0; i < values.length; i++) out.writeFloatLE(values[i]!, i * 4);
      return out;
    }
    return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  }
  const out = Buffer.allocUnsafe(values.length * 2);
  for (let i = 0; i < values.length; i++) out.writeUInt16LE(float32ToFloat16Bits(values[i]!), i * 2);
  return out;
}

/** Serializes header, metadata and tensor infos (everything before the data section, padding included). */
export function encodeGgufHeader(
  file: GgufFile,
  options: WriteGgufOptions = {},
): { header: Buffer; tensorOffsets: number[]; dataBytes: number } {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) {
    throw new RangeError(`alignment must be a power of two, got ${alignment}`);
  }
  const metadata: Record<string, GgufValue> = { ...file.metadata };
  const declared = metadata["general.alignment"];
  if (declared == null) metadata["general.alignment"] = gguf.uint32(alignment);
  else if (declared.type !== "uint32" || declared.value !== alignment) {
    throw new Error(`general.alignment must be a uint32 equal to the alignment option (${alignment})`);
  }

  const names = new Set<string>();
  const tensorOffsets: number[] = [];
  let dataBytes = 0;
  for (const tensor of file.tensors) {
    if (names.has(tensor.name)) throw new Error(`duplicate tensor name ${tensor.name}`);
    names.add(tensor.name);
    if (tensor.shape.length < 1 || tensor.shape.length > 4 || tensor.shape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new RangeError(`tensor ${tensor.name}: bad shape [${tensor.shape.join(", ")}]`);
    }
    tensorOffsets.push(dataBytes);
    dataBytes += padTo(elementCount(tensor.shape) * BYTES_PER_ELEMENT[tensor.type], alignment);
  }

  const sink = new ByteSink();
  for (const ch of GGUF_MAGIC) sink.u8(ch.charCodeAt(0));
  sink.u32(GGUF_VERSION);
  sink.u64(file.tensors.length);
  sink.u64(Object.keys(metadata).length);
  for (const [key, value] of Object.entries(metadata)) {
    if (key.length === 0) throw new Error("empty metadata key");
    sink.string(key);
    writeValue(sink, key, value);
  }
  file.tensors.forEach((tensor, i) => {
    sink.string(tensor.name);
    sink.u32(tensor.shape.length);
    for (const d of tensor.shape) sink.u64(d);
    sink.u32(tensor.type === "f32" ? GgmlType.F32 : GgmlType.F16);
    sink.u64(tensorOffsets[i]!);
  });
  if (file.tensors.length > 0) sink.zeros(padTo(sink.length, alignment) - sink.length);
  return { header: Buffer.from(sink.bytes()), tensorOffsets, dataBytes };
}

async function writeAll(handle: FileHandle, data: Uint8Array): Promise<void> {
  let written = 0;
  while (written < data.length) {
    const { bytesWritten } = await handle.write(data, written, data.length - written);
    written += bytesWritten;
  }
}

/**
 * Writes a GGUF v3 file atomically: to `<dir>/.<name>.<random>.tmp`, fsynced, then
 * renamed to `path`. On failure the temporary file is removed and `path` is left
 * untouched. Returns the file size in bytes.
 */
export async function writeGguf(path: string, file: GgufFile, options: WriteGgufOptions = {}): Promise<{ bytes: number }> {
  const alignment = options.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  const { header, dataBytes } = encodeGgufHeader(file, { alignment });
  const tmpPath = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  const handle = await open(tmpPath, "wx");
  let ok = false;
  try {
    await writeAll(handle, header);
    for (const tensor of file.tensors) {
      const values = typeof tensor.data === "function" ? tensor.data() : tensor.data;
      const expected = elementCount(tensor.shape);
      if (values.length !== expected) {
        throw new Error(`tensor ${tensor.name}: ${values.length} values for shape [${tensor.shape.join(", ")}] (${expected})`);
      }
      const bytes = tensorBytes(tensor, values);
      await writeAll(handle, bytes);
      const padding = padTo(bytes.length, alignment) - bytes.length;
      if (padding > 0) await writeAll(handle, new Uint8Array(padding));
    }
    await handle.sync();
    ok = true;
  } finally {
    await handle.close();
    if (!ok) await unlink(tmpPath).catch(() => undefined);
  }
  try {
    await rename(tmpPath, path);
  } catch (error) {
    await unlink(tmpPath).catch(() => undefined);
    throw error;
  }
  return { bytes: header.length + dataBytes };
}

// ---------------------------------------------------------------------------
// Reader (header, metadata and tensor infos only)
// ---------------------------------------------------------------------------

export type GgufReadValue = number | bigint | boolean | string | GgufReadValue[];

export interface GgufTensorInfo {
  readonly name: string;
  readonly shape: readonly number[];
  readonly ggmlType: number;
  /** Relative to the start of the data section. */
  readonly offset: number;
}

export interface GgufHeader {
  readonly magic: string;
  readonly version: number;
  readonly tensorCount: number;
  readonly kvCount: number;
  readonly metadata: Readonly<Record<string, GgufReadValue>>;
  /** `gguf_type` code of each metadata value (arrays: ARRAY). */
  readonly metadataTypes: Readonly<Record<string, number>>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Absolute file offset of the data section. */
  readonly dataOffset: number;
}

class ByteSource {
  pos = 0;
  constructor(private readonly buf: Buffer) {}
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new Error("GGUF: unexpected end of data");
  }
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.pos++);
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  num64(): number {
    const v = this.u64();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("GGUF: count too large");
    return Number(v);
  }
  string(): string {
    const n = this.num64();
    this.need(n);
    const s = this.buf.toString("utf8", this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  value(type: number): GgufReadValue {
    switch (type) {
      case GgufValueType.UINT8:
        return this.u8();
      case GgufValueType.INT8:
        this.need(1);
        return this.buf.readInt8(this.pos++);
      case GgufValueType.UINT16:
        this.need(2);
        this.pos += 2;
        return this.buf.readUInt16LE(this.pos - 2);
      case GgufValueType.INT16:
        this.need(2);
        this.pos += 2;
        return this.buf.readInt16LE(this.pos - 2);
      case GgufValueType.UINT32:
        return this.u32();
      case GgufValueType.INT32:
        this.need(4);
        this.pos += 4;
        return this.buf.readInt32LE(this.pos - 4);
      case GgufValueType.FLOAT32:
        this.need(4);
        this.pos += 4;
        return this.buf.readFloatLE(this.pos - 4);
      case GgufValueType.BOOL:
        return this.u8() !== 0;
      case GgufValueType.STRING:
        return this.string();
      case GgufValueType.UINT64:
        return this.u64();
      case GgufValueType.INT64:
        this.need(8);
        this.pos += 8;
        return this.buf.readBigInt64LE(this.pos - 8);
      case GgufValueType.FLOAT64:
        this.need(8);
        this.pos += 8;
        return this.buf.readDoubleLE(this.pos - 8);
      case GgufValueType.ARRAY: {
        const itemType = this.u32();
        const n = this.num64();
        const items: GgufReadValue[] = [];
        for (let i = 0; i < n; i++) items.push(this.value(itemType));
        return items;
      }
      default:
        throw new Error(`GGUF: unknown value type ${type}`);
    }
  }
}

/** Parses the header, metadata and tensor infos of a GGUF file held in `buf`. */
export function readGgufHeader(buf: Buffer): GgufHeader {
  const src = new ByteSource(buf);
  const magic = String.fromCharCode(src.u8(), src.u8(), src.u8(), src.u8());
  if (magic !== GGUF_MAGIC) throw new Error(`not a GGUF file (magic ${JSON.stringify(magic)})`);
  const version = src.u32();
  if (version !== GGUF_VERSION) throw new Error(`unsupported GGUF version ${version}`);
  const tensorCount = src.num64();
  const kvCount = src.num64();
  const metadata: Record<string, GgufReadValue> = {};
  const metadataTypes: Record<string, number> = {};
  for (let i = 0; i < kvCount; i++) {
    const key = src.string();
    const type = src.u32();
    metadataTypes[key] = type;
    metadata[key] = src.value(type);
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) {
    const name = src.string();
    const nDims = src.u32();
    const shape: number[] = [];
    for (let d = 0; d < nDims; d++) shape.push(src.num64());
    const ggmlType = src.u32();
    const offset = src.num64();
    tensors.push({ name, shape, ggmlType, offset });
  }
  const alignmentValue = metadata["general.alignment"];
  const alignment = typeof alignmentValue === "number" ? alignmentValue : GGUF_DEFAULT_ALIGNMENT;
  return { magic, version, tensorCount, kvCount, metadata, metadataTypes, tensors, alignment, dataOffset: padTo(src.pos, alignment) };
}
