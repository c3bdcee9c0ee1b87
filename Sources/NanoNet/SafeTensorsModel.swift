import Foundation
import NanoTensor

/// The native model format: safetensors (an 8-byte little-endian header length, a JSON header
/// naming every tensor's dtype, shape and byte range, then raw little-endian float32 data) with the
/// `ModelMetadata` as JSON under `__metadata__.nanofind`. Save then load is bit-exact.
public enum SafeTensorsModel {
    static let metadataKey = "nanofind"

    public static func save(_ model: Model, to url: URL) throws {
        try SafeTensorsFile.write(encode(model), to: url)
    }

    /// The bytes of the model's file.
    public static func encode(_ model: Model) throws -> Data {
        let entries = model.network.namedTensors.map { name, t -> SafeTensorsFile.Entry in
            let s = t.shape
            return SafeTensorsFile.Entry(name: name, shape: name.hasSuffix(".weight") ? [s.n, s.c, s.h, s.w] : [t.count], values: t.array)
        }
        // JSON has no NaN or infinity: a metric that is not a number (a validation loss without
        // validation images) is left out rather than fail the save at the end of a training run.
        var metadata = model.metadata
        metadata.metrics = metadata.metrics?.filter { $0.value.isFinite }
        let metaJSON = try JSONEncoder().encode(metadata)
        return try SafeTensorsFile.encode(entries, metadata: [metadataKey: String(decoding: metaJSON, as: UTF8.self)])
    }

    public static func load(_ url: URL) throws -> Model {
        func fail(_ r: String) -> ModelFileError { ModelFileError(file: url.path, reason: r) }
        let size = (try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? NSNumber)?.intValue ?? 0
        guard size <= 1 << 30 else { throw fail("not a model file (\(size) bytes; NanoFind models are well under 1 GiB)") }
        let bytes: Data
        do { bytes = try Data(contentsOf: url) } catch { throw fail("cannot be read") }
        return try load(bytes, file: url.path)
    }

    /// A model from the bytes of a safetensors file (`file` names it in errors).
    public static func load(_ bytes: Data, file: String) throws -> Model {
        func fail(_ r: String) -> ModelFileError { ModelFileError(file: file, reason: r) }
        guard bytes.count >= 8 else { throw fail("not a model file (too short for a safetensors header)") }
        let n = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard n > 1, n <= UInt64(bytes.count - 8), n < 100_000_000 else {
            throw fail("not a model file: safetensors header length \(n) does not fit the file (\(bytes.count) bytes)")
        }
        let headerData = bytes.subdata(in: 8..<(8 + Int(n)))
        guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw fail("safetensors header is not valid JSON")
        }
        guard let meta = header["__metadata__"] as? [String: String], let metaText = meta[metadataKey],
              let metadata = try? JSONDecoder().decode(ModelMetadata.self, from: Data(metaText.utf8)) else {
            throw fail("safetensors file has no NanoFind metadata (__metadata__.\(metadataKey))")
        }
        if let problem = metadata.problem { throw fail(problem) }
        let dataStart = 8 + Int(n)
        let dataCount = bytes.count - dataStart
        let needed = (metadata.config.parameterCount ?? Int.max / 4) * 4
        guard needed <= dataCount else {
            throw fail("truncated: the network needs \(needed) bytes of weights, the file has \(dataCount)")
        }
        let network = UNet(config: metadata.config)
        var used = Set<String>()
        for (name, t) in network.namedTensors {
            guard let entry = header[name] as? [String: Any] else { throw fail("tensor \(name) is missing") }
            guard entry["dtype"] as? String == "F32" else { throw fail("tensor \(name) is not F32") }
            guard let shape = entry["shape"] as? [Int], shape.allSatisfy({ $0 >= 0 && $0 <= t.count }),
                  shape.reduce(1, { $0.multipliedReportingOverflow(by: $1).overflow ? -1 : $0 * $1 }) == t.count else {
                throw fail("tensor \(name) has shape \(entry["shape"] ?? "?"), the network needs \(t.count) values")
            }
            guard let offs = entry["data_offsets"] as? [Int], offs.count == 2, offs[0] >= 0, offs[0] <= dataCount,
                  dataCount - offs[0] >= t.count * 4, offs[1] >= offs[0], offs[1] - offs[0] == t.count * 4 else {
                throw fail("tensor \(name) has byte range \(entry["data_offsets"] ?? "?") outside the data (\(dataCount) bytes)")
            }
            bytes.withUnsafeBytes { raw in
                let src = raw.baseAddress! + dataStart + offs[0]
                for k in 0..<t.count { t.data[k] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))) }
            }
            used.insert(name)
        }
        let extra = header.keys.filter { $0 != "__metadata__" && !used.contains($0) }
        guard extra.isEmpty else { throw fail("unexpected tensors \(extra.sorted().prefix(3)) for this architecture") }
        return Model(network: network, metadata: metadata)
    }
}
