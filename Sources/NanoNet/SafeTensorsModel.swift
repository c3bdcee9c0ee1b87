import Foundation
import NanoTensor

/// The native model format: safetensors (an 8-byte little-endian header length, a JSON header
/// naming every tensor's dtype, shape and byte range, then raw little-endian float32 data) with the
/// `ModelMetadata` as JSON under `__metadata__.nanofind`. Save then load is bit-exact.
public enum SafeTensorsModel {
    static let metadataKey = "nanofind"

    public static func save(_ model: Model, to url: URL) throws {
        let tensors = model.network.namedTensors
        var header: [String: Any] = [:]
        var offset = 0
        for (name, t) in tensors {
            let s = t.shape
            let dims = name.hasSuffix(".weight") ? [s.n, s.c, s.h, s.w] : [t.count]
            header[name] = ["dtype": "F32", "shape": dims, "data_offsets": [offset, offset + t.count * 4]]
            offset += t.count * 4
        }
        let metaJSON = try JSONEncoder().encode(model.metadata)
        header["__metadata__"] = [metadataKey: String(decoding: metaJSON, as: UTF8.self)]
        var headerData = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while headerData.count % 8 != 0 { headerData.append(0x20) }
        var out = Data()
        var n = UInt64(headerData.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(headerData)
        for (_, t) in tensors { out.append(Data(bytes: t.data, count: t.count * 4)) }
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial")
        do {
            try out.write(to: tmp)
            if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
            try FileManager.default.moveItem(at: tmp, to: url)
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw ModelFileError(file: url.path, reason: "cannot be written (\(error.localizedDescription))")
        }
    }

    public static func load(_ url: URL) throws -> Model {
        func fail(_ r: String) -> ModelFileError { ModelFileError(file: url.path, reason: r) }
        let bytes: Data
        do { bytes = try Data(contentsOf: url) } catch { throw fail("cannot be read") }
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
        guard metadata.config.widths.count >= 1, metadata.config.widths.count <= 8,
              metadata.config.widths.allSatisfy({ $0 >= 1 && $0 <= 4096 }),
              (1...4096).contains(metadata.config.centreWidth), (1...64).contains(metadata.config.inputChannels),
              (2...64).contains(metadata.config.classes) else {
            throw fail("metadata describes an implausible network \(metadata.config)")
        }
        let network = UNet(config: metadata.config)
        let dataStart = 8 + Int(n)
        let dataCount = bytes.count - dataStart
        var used = Set<String>()
        for (name, t) in network.namedTensors {
            guard let entry = header[name] as? [String: Any] else { throw fail("tensor \(name) is missing") }
            guard entry["dtype"] as? String == "F32" else { throw fail("tensor \(name) is not F32") }
            guard let shape = entry["shape"] as? [Int], shape.reduce(1, *) == t.count else {
                throw fail("tensor \(name) has shape \(entry["shape"] ?? "?"), the network needs \(t.count) values")
            }
            guard let offs = entry["data_offsets"] as? [Int], offs.count == 2, offs[0] >= 0, offs[1] == offs[0] + t.count * 4,
                  offs[1] <= dataCount else {
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
