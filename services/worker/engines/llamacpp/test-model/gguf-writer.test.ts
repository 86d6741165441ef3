import test from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufFileInfo } from "node-llama-cpp";
import { float32ToFloat16Bits, gguf, GgmlType, GgufValueType, readGgufHeader, writeGguf, type GgufFile } from "./gguf-writer.js";

async function tempDir(t: test.TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "gguf-writer-test-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const f32Values = Float32Array.from({ length: 15 }, (_, i) => i * 0.25 - 1.5); // shape [3, 5]: 60 bytes → padded to 64
const f16Values = Float32Array.from([1, -2, 0.5, 65504, 0, -0, 0.1]); // shape [7]: 14 bytes → padded to 32

const sample: GgufFile = {
  metadata: {
    "general.architecture": gguf.string("llama"),
    "general.name": gguf.string("writer test ✓"),
    "test.u32": gguf.uint32(4_000_000_000),
    "test.i32": gguf.int32(-123),
    "test.u64": gguf.uint64(2n ** 40n + 1n),
    "test.f32": gguf.float32(0.5),
    "test.bool": gguf.bool(true),
    "test.strings": gguf.stringArray(["a", "", "Ġthe", "<|im_end|>"]),
    "test.i32s": gguf.int32Array([1, -1, 3]),
    "test.f32s": gguf.float32Array([0.25, -8]),
  },
  tensors: [
    { name: "a.weight", shape: [3, 5], type: "f32", data: f32Values },
    { name: "b.weight", shape: [7], type: "f16", data: () => f16Values },
  ],
};

test("GGUF writer: header, metadata, tensor infos and aligned data read back", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "sample.gguf");
  const { bytes } = await writeGguf(path, sample);
  const buf = await readFile(path);
  assert.equal(buf.length, bytes);

  // raw header fields
  assert.equal(buf.toString("latin1", 0, 4), "GGUF");
  assert.equal(buf.readUInt32LE(4), 3);
  assert.equal(buf.readBigUInt64LE(8), 2n); // tensors
  assert.equal(buf.readBigUInt64LE(16), 11n); // 10 keys + general.alignment

  const header = readGgufHeader(buf);
  assert.equal(header.version, 3);
  assert.equal(header.tensorCount, 2);
  assert.equal(header.kvCount, 11);
  assert.equal(header.alignment, 32);
  assert.equal(header.metadata["general.alignment"], 32);
  assert.equal(header.metadataTypes["general.alignment"], GgufValueType.UINT32);
  assert.equal(header.metadata["general.name"], "writer test ✓");
  assert.equal(header.metadata["test.u32"], 4_000_000_000);
  assert.equal(header.metadataTypes["test.u32"], GgufValueType.UINT32);
  assert.equal(header.metadata["test.i32"], -123);
  assert.equal(header.metadataTypes["test.i32"], GgufValueType.INT32);
  assert.equal(header.metadata["test.u64"], 2n ** 40n + 1n);
  assert.equal(header.metadata["test.f32"], 0.5);
  assert.equal(header.metadataTypes["test.f32"], GgufValueType.FLOAT32);
  assert.equal(header.metadata["test.bool"], true);
  assert.deepEqual(header.metadata["test.strings"], ["a", "", "Ġthe", "<|im_end|>"]);
  assert.deepEqual(header.metadata["test.i32s"], [1, -1, 3]);
  assert.deepEqual(header.metadata["test.f32s"], [0.25, -8]);
  assert.deepEqual(Object.keys(header.metadata).slice(0, 2), ["general.architecture", "general.name"]);

  assert.deepEqual(header.tensors, [
    { name: "a.weight", shape: [3, 5], ggmlType: GgmlType.F32, offset: 0 },
    { name: "b.weight", shape: [7], ggmlType: GgmlType.F16, offset: 64 },
  ]);
  assert.equal(header.dataOffset % 32, 0);
  assert.equal(buf.length, header.dataOffset + 64 + 32);

  const a = header.dataOffset;
  for (let i = 0; i < f32Values.length; i++) assert.equal(buf.readFloatLE(a + 4 * i), f32Values[i]);
  for (let i = 60; i < 64; i++) assert.equal(buf[a + i], 0, "padding is zero");
  const b = header.dataOffset + 64;
  const f16 = Array.from({ length: 7 }, (_, i) => buf.readUInt16LE(b + 2 * i));
  assert.deepEqual(f16, [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0000, 0x8000, 0x2e66]);
});

test("GGUF writer: output parses with node-llama-cpp's GGUF reader", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "sample.gguf");
  await writeGguf(path, sample);
  const info = await readGgufFileInfo(path, { logWarnings: false });
  assert.equal(info.version, 3);
  assert.equal(Number(info.tensorCount), 2);
  const metadata = info.metadata as unknown as Record<string, Record<string, unknown>>;
  assert.equal(metadata["general"]?.["name"], "writer test ✓");
  assert.equal(metadata["general"]?.["alignment"], 32);
  assert.deepEqual(metadata["test"]?.["strings"], ["a", "", "Ġthe", "<|im_end|>"]);
  assert.deepEqual(
    info.tensorInfo?.map((ti) => ({ name: ti.name, dims: ti.dimensions.map(Number), offset: Number(ti.offset) })),
    [
      { name: "a.weight", dims: [3, 5], offset: 0 },
      { name: "b.weight", dims: [7], offset: 64 },
    ],
  );
});

test("GGUF writer: a failed write leaves neither a partial file nor a temporary", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "model.gguf");
  const failing: GgufFile = {
    metadata: { "general.architecture": gguf.string("llama") },
    tensors: [
      { name: "ok", shape: [4], type: "f32", data: new Float32Array(4) },
      {
        name: "boom",
        shape: [4],
        type: "f32",
        data: () => {
          throw new Error("generator crashed");
        },
      },
    ],
  };
  await assert.rejects(writeGguf(path, failing), /generator crashed/);
  assert.deepEqual(await readdir(dir), []);

  // an existing file at the destination is untouched by a failed rewrite
  await writeFile(path, "previous");
  await assert.rejects(writeGguf(path, failing), /generator crashed/);
  assert.deepEqual(await readdir(dir), ["model.gguf"]);
  assert.equal(await readFile(path, "utf8"), "previous");
});

test("GGUF writer: rejects invalid input", async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, "bad.gguf");
  const tensor = { name: "t", shape: [2], type: "f32", data: new Float32Array(2) } as const;
  await assert.rejects(writeGguf(path, { metadata: {}, tensors: [tensor, tensor] }), /duplicate tensor/);
  await assert.rejects(writeGguf(path, { metadata: {}, tensors: [{ ...tensor, data: new Float32Array(3) }] }), /3 values/);
  await assert.rejects(writeGguf(path, { metadata: {}, tensors: [{ ...tensor, shape: [0] }] }), /bad shape/);
  await assert.rejects(writeGguf(path, { metadata: { "x.y": gguf.uint32(-1) }, tensors: [] }), /out of range/);
  await assert.rejects(writeGguf(path, { metadata: {}, tensors: [] }, { alignment: 24 }), /power of two/);
  assert.deepEqual(await readdir(dir), []);
});

test("float32ToFloat16Bits rounds to nearest even and handles specials", () => {
  assert.equal(float32ToFloat16Bits(1), 0x3c00);
  assert.equal(float32ToFloat16Bits(-2), 0xc000);
  assert.equal(float32ToFloat16Bits(65504), 0x7bff);
  assert.equal(float32ToFloat16Bits(65520), 0x7c00); // rounds up to +inf
  assert.equal(float32ToFloat16Bits(Infinity), 0x7c00);
  assert.equal(float32ToFloat16Bits(-Infinity), 0xfc00);
  assert.equal(float32ToFloat16Bits(NaN) & 0x7e00, 0x7e00);
  assert.equal(float32ToFloat16Bits(2 ** -24), 0x0001); // smallest subnormal
  assert.equal(float32ToFloat16Bits(2 ** -25), 0x0000); // halfway → even (0)
  assert.equal(float32ToFloat16Bits(2 ** -14), 0x0400); // smallest normal
  assert.equal(float32ToFloat16Bits(1 + 2 ** -11), 0x3c00); // halfway → even
  assert.equal(float32ToFloat16Bits(1 + 3 * 2 ** -11), 0x3c02); // halfway → even (up)
  assert.equal(float32ToFloat16Bits(0.02), 0x251f);
});
