import Crypto
import Foundation
import MicrographIO
import XCTest

/// Support for the DM / SER / EMD conformance tests: the reference corpus in
/// `../shared/reference/formats` (expected.json), first-frame statistics and SHA-256.
enum DMSEREMDCorpus {
    /// `<package root>/../shared/reference/formats`, derived from this file's path.
    static var formatsDirectory: URL {
        URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent()  // MicrographIOTests
            .deletingLastPathComponent()  // Tests
            .deletingLastPathComponent()  // package root
            .deletingLastPathComponent()
            .appendingPathComponent("shared/reference/formats")
    }

    static var isAvailable: Bool {
        FileManager.default.fileExists(atPath: formatsDirectory.appendingPathComponent("expected.json").path)
    }

    /// The corpus folder, or an XCTSkip saying it is absent.
    static func requireCorpus() throws -> URL {
        guard isAvailable else {
            throw XCTSkip("reference corpus not found at \(formatsDirectory.path) (../shared is absent)")
        }
        return formatsDirectory
    }

    /// One expected.json entry (only the keys these tests compare).
    struct Entry {
        var file: String
        var index: Int
        var format: String
        var width: Int, height: Int, frames: Int
        var dtype: String
        var sha256: String
        var min: Double, max: Double, mean: Double
        var pixelSizeNM: [Double]?
        var pixelSize: [Double]?
        var units: [String]?
        var pixelSizeInvNM: [Double]?
        var metadata: [String: Any]
    }

    static func entries(formats: Set<String>) throws -> [Entry] {
        let dir = try requireCorpus()
        let data = try Data(contentsOf: dir.appendingPathComponent("expected.json"))
        guard let list = try JSONSerialization.jsonObject(with: data) as? [[String: Any]] else {
            throw XCTSkip("expected.json is not a list of objects")
        }
        func num(_ v: Any?) -> Double? { (v as? NSNumber)?.doubleValue }
        func nums(_ v: Any?) -> [Double]? { (v as? [Any])?.compactMap(num) }
        return list.compactMap { e -> Entry? in
            guard let format = e["format"] as? String, formats.contains(format), e["error"] == nil,
                  let file = e["file"] as? String else { return nil }
            var units: [String]? = nil
            if let u = e["unit"] as? String { units = [u, u] } else if let u = e["unit"] as? [String] { units = u }
            return Entry(file: file, index: (e["index"] as? Int) ?? 0, format: format,
                         width: (e["width"] as? Int) ?? -1, height: (e["height"] as? Int) ?? -1,
                         frames: (e["frames"] as? Int) ?? -1, dtype: (e["dtype"] as? String) ?? "?",
                         sha256: (e["sha256"] as? String) ?? "?",
                         min: num(e["min"]) ?? .nan, max: num(e["max"]) ?? .nan, mean: num(e["mean"]) ?? .nan,
                         pixelSizeNM: nums(e["pixel_size_nm"]), pixelSize: nums(e["pixel_size"]), units: units,
                         pixelSizeInvNM: nums(e["pixel_size_inv_nm"]),
                         metadata: (e["metadata"] as? [String: Any]) ?? [:])
        }
    }

    static func sha256Hex<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        SHA256.hash(data: Data(bytes)).map { String(format: "%02x", $0) }.joined()
    }

    /// Min, max and mean of the first frame in Double (complex: of the modulus).
    static func firstFrameStats(_ m: Micrograph) -> (min: Double, max: Double, mean: Double) {
        let bytes = Array(m.frameBytes(0))
        var values: [Double] = []
        values.reserveCapacity(m.samplesPerFrame)
        bytes.withUnsafeBytes { p in
            func load<T>(_ t: T.Type, _ i: Int) -> T { p.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self) }
            let n = m.samplesPerFrame
            for i in 0..<n {
                switch m.pixelType {
                case .int8: values.append(Double(load(Int8.self, i)))
                case .uint8: values.append(Double(load(UInt8.self, i)))
                case .bool: values.append(load(UInt8.self, i) != 0 ? 1 : 0)
                case .int16: values.append(Double(load(Int16.self, i)))
                case .uint16: values.append(Double(load(UInt16.self, i)))
                case .int32: values.append(Double(load(Int32.self, i)))
                case .uint32: values.append(Double(load(UInt32.self, i)))
                case .int64: values.append(Double(load(Int64.self, i)))
                case .uint64: values.append(Double(load(UInt64.self, i)))
                case .float16: values.append(.nan)  // not produced by the DM, SER or EMD readers
                case .float32: values.append(Double(load(Float.self, i)))
                case .float64: values.append(load(Double.self, i))
                case .complex64:
                    let re = Double(load(Float.self, 2 * i)), im = Double(load(Float.self, 2 * i + 1))
                    values.append((re * re + im * im).squareRoot())
                case .complex128:
                    let re = load(Double.self, 2 * i), im = load(Double.self, 2 * i + 1)
                    values.append((re * re + im * im).squareRoot())
                }
            }
        }
        guard let lo = values.min(), let hi = values.max() else { return (.nan, .nan, .nan) }
        return (lo, hi, values.reduce(0, +) / Double(values.count))
    }

    static func close(_ a: Double, _ b: Double, rel: Double = 1e-6) -> Bool {
        if a == b { return true }
        return abs(a - b) <= rel * max(abs(a), abs(b))
    }

    /// Every way `m` differs from `e` (empty when they agree).
    static func differences(_ m: Micrograph, _ e: Entry) -> [String] {
        var d: [String] = []
        if m.width != e.width { d.append("width \(m.width) vs \(e.width)") }
        if m.height != e.height { d.append("height \(m.height) vs \(e.height)") }
        if m.frames != e.frames { d.append("frames \(m.frames) vs \(e.frames)") }
        if m.pixelType.rawValue != e.dtype { d.append("dtype \(m.pixelType.rawValue) vs \(e.dtype)") }
        if m.format != e.format { d.append("format \(m.format) vs \(e.format)") }
        if !d.isEmpty { return d }
        let sha = sha256Hex(m.frameBytes(0))
        if sha != e.sha256 { d.append("sha256 \(sha) vs \(e.sha256)") }
        let s = firstFrameStats(m)
        if !close(s.min, e.min) { d.append("min \(s.min) vs \(e.min)") }
        if !close(s.max, e.max) { d.append("max \(s.max) vs \(e.max)") }
        if !close(s.mean, e.mean) { d.append("mean \(s.mean) vs \(e.mean)") }
        if let p = e.pixelSizeNM, p.count == 2 {
            if let q = m.pixelSize {
                if !close(q.x, p[0]) || !close(q.y, p[1]) { d.append("pixel size \(q) vs \(p) nm") }
            } else { d.append("pixel size nil vs \(p) nm") }
        } else if let q = m.pixelSize {
            d.append("pixel size \(q) vs none")
        }
        if let p = e.pixelSize, p.count == 2, let u = e.units {
            if let c = m.storedCalibration {
                if !close(c.x, p[0]) || !close(c.y, p[1]) { d.append("stored calibration \(c.x), \(c.y) vs \(p)") }
                if [c.unitX, c.unitY] != u { d.append("stored units \(c.unitX), \(c.unitY) vs \(u)") }
            } else { d.append("stored calibration nil vs \(p) \(u)") }
        } else if let c = m.storedCalibration {
            d.append("stored calibration \(c) vs none")
        }
        if let inv = e.pixelSizeInvNM, inv.count == 2 {
            // Reciprocal: the stored value converted to 1/nm.
            if let c = m.storedCalibration {
                let f: Double = c.unitX == "1/m" ? 1e-9 : (c.unitX == "1/nm" ? 1 : .nan)
                if !close(c.x * f, inv[0]) || !close(c.y * f, inv[1]) { d.append("reciprocal \(c) vs \(inv) 1/nm") }
            }
        }
        let md = m.metadata
        func checkNumber(_ key: String, _ v: Double?) {
            guard let want = (e.metadata[key] as? NSNumber)?.doubleValue else { return }
            if let v, close(v, want) { return }
            d.append("metadata \(key) \(v.map { "\($0)" } ?? "nil") vs \(want)")
        }
        func checkString(_ key: String, _ v: String?) {
            guard let want = e.metadata[key] as? String else { return }
            if v != want { d.append("metadata \(key) \(v ?? "nil") vs \(want)") }
        }
        checkNumber("voltage_kv", md.voltageKV)
        checkNumber("magnification", md.magnification)
        checkString("detector", md.detector)
        checkString("microscope", md.microscope)
        checkString("acquisition_date", md.acquisitionDate)
        checkString("mode", md.mode)
        return d
    }

    /// Reads every entry of `formats` with `read` and asserts agreement; returns (agree, total).
    @discardableResult
    static func assertConformance(formats: Set<String>, read: (URL) throws -> [Micrograph],
                                  file: StaticString = #filePath, line: UInt = #line) throws -> (Int, Int) {
        let dir = try requireCorpus()
        let list = try entries(formats: formats)
        XCTAssertFalse(list.isEmpty, "expected.json lists no \(formats.sorted()) entries", file: file, line: line)
        var cache: [String: Result<[Micrograph], Error>] = [:]
        var agree = 0
        for e in list {
            let result = cache[e.file] ?? Result { try read(dir.appendingPathComponent(e.file)) }
            cache[e.file] = result
            switch result {
            case .failure(let err):
                XCTFail("\(e.file): cannot be read: \(err)", file: file, line: line)
            case .success(let images):
                guard e.index < images.count else {
                    XCTFail("\(e.file): has \(images.count) images, expected.json lists index \(e.index)", file: file, line: line)
                    continue
                }
                let diffs = differences(images[e.index], e)
                if diffs.isEmpty { agree += 1 } else {
                    XCTFail("\(e.file)[\(e.index)]: " + diffs.joined(separator: "; "), file: file, line: line)
                }
            }
        }
        // Every image a reader returns must be one that expected.json lists (no thumbnails, no plots).
        for (f, r) in cache {
            if case .success(let images) = r {
                let listed = list.filter { $0.file == f }.count
                XCTAssertEqual(images.count, listed, "\(f): reader returned \(images.count) images, expected.json lists \(listed)",
                               file: file, line: line)
            }
        }
        print("\(formats.sorted().joined(separator: "/")): \(agree)/\(list.count) entries agree")
        XCTAssertEqual(agree, list.count, file: file, line: line)
        return (agree, list.count)
    }
}
