import CNanoSupport
import Foundation

/// The safetensors container: an 8-byte little-endian header length, a JSON header naming every
/// tensor's dtype, shape and byte range (plus string `__metadata__`), then raw little-endian
/// float32 data. Model files and training checkpoints are both written through this.
public enum SafeTensorsFile {
    public struct Entry: Sendable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        public init(name: String, shape: [Int], values: [Float]) { self.name = name; self.shape = shape; self.values = values }
    }

    /// The bytes of a file holding `entries` (in that order) and `metadata`.
    public static func encode(_ entries: [Entry], metadata: [String: String]) throws -> Data {
        var header: [String: Any] = [:]
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": "F32", "shape": e.shape, "data_offsets": [offset, offset + e.values.count * 4]]
            offset += e.values.count * 4
        }
        header["__metadata__"] = metadata
        var headerData = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while headerData.count % 8 != 0 { headerData.append(0x20) }
        var out = Data()
        var n = UInt64(headerData.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(headerData)
        for e in entries { e.values.withUnsafeBytes { out.append(contentsOf: $0) } }
        return out
    }

    /// Writes through a temporary file and a rename, so readers see the old file or the new one.
    public static func write(_ data: Data, to url: URL) throws {
        var st = stat()
        if stat(url.path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG {
            throw ModelFileError(file: url.path, reason: (st.st_mode & S_IFMT) == S_IFDIR
                                 ? "is a folder; name the model file to write" : "exists and is not a regular file; it is not replaced")
        }
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.deletingLastPathComponent().path, isDirectory: &isDir), isDir.boolValue else {
            throw ModelFileError(file: url.path, reason: "cannot be written: its folder does not exist")
        }
        let tmp = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial-\(getpid())")
        let slot = nf_cleanup_register(tmp.path, 0)  // removed if the run is interrupted meanwhile
        defer { nf_cleanup_unregister(slot) }
        do {
            try data.write(to: tmp)
            guard rename(tmp.path, url.path) == 0 else { throw CocoaError(.fileWriteUnknown) }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw ModelFileError(file: url.path, reason: "cannot be written (\(error.localizedDescription))")
        }
    }

    /// Every tensor and the metadata of a file, each range checked against the file.
    public static func decode(_ bytes: Data, file: String) throws -> (entries: [String: Entry], metadata: [String: String]) {
        func fail(_ r: String) -> ModelFileError { ModelFileError(file: file, reason: r) }
        guard bytes.count >= 8 else { throw fail("too short for a safetensors header") }
        let n = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard n > 1, n <= UInt64(bytes.count - 8), n < 100_000_000 else { throw fail("header length \(n) does not fit the file") }
        guard let header = try? JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + Int(n)))) as? [String: Any] else {
            throw fail("header is not valid JSON")
        }
        let dataStart = 8 + Int(n), dataCount = bytes.count - dataStart
        var entries: [String: Entry] = [:]
        for (name, value) in header where name != "__metadata__" {
            guard let e = value as? [String: Any], e["dtype"] as? String == "F32", let shape = e["shape"] as? [Int],
                  let offs = e["data_offsets"] as? [Int], offs.count == 2, shape.allSatisfy({ $0 >= 0 && $0 < 1 << 31 }) else {
                throw fail("tensor \(name) is not a float32 tensor with a shape and a byte range")
            }
            // The element count, checked as it is formed: this target is built unchecked, where a
            // wrapped product (a shape of 2³⁰ × 2³⁰ × 4) would pass the range check as 0 bytes.
            var count = 1
            for d in shape {
                let (c, overflow) = count.multipliedReportingOverflow(by: d)
                guard !overflow, c <= dataCount / 4 else {
                    throw fail("tensor \(name) has shape \(shape): more values than the file's \(dataCount) bytes of data hold")
                }
                count = c
            }
            guard offs[0] >= 0, offs[1] >= offs[0], offs[1] <= dataCount, offs[1] - offs[0] == count * 4 else {
                throw fail("tensor \(name) has byte range \(offs) outside the data (\(dataCount) bytes)")
            }
            var values = [Float](repeating: 0, count: count)
            bytes.withUnsafeBytes { raw in
                let src = raw.baseAddress! + dataStart + offs[0]
                for k in 0..<count { values[k] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * k, as: UInt32.self))) }
            }
            entries[name] = Entry(name: name, shape: shape, values: values)
        }
        return (entries, header["__metadata__"] as? [String: String] ?? [:])
    }
}
